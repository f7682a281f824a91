"""Start and stop the development stack: the Solr stand-in, CKAN, and the hub
with its bridge. ``make dev``, ``make dev-up`` and ``make dev-stop`` call it,
and the end-to-end tests start a second stack with it on other ports.

    python dev/stack.py up      # start in the background, return once all answer
    python dev/stack.py run     # start, then stay in the foreground until Ctrl-C
    python dev/stack.py stop    # stop everything this stack started

Ports, directories and the database come from the environment (STACK_DIR,
CKAN_PORT, HUB_PORT, BRIDGE_PORT, SOLR_PORT, HUB_API_PORT, PROXY_API_PORT,
CKAN_DB, REDIS_DB); the plugin's settings come from the CKAN_* variables of
the settings table and are handed to CKAN and the hub alike.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ENV = os.environ

STACK_DIR = Path(ENV.get("STACK_DIR", ROOT / ".dev")).resolve()
CKAN_PORT = int(ENV.get("CKAN_PORT", "5000"))
HUB_PORT = int(ENV.get("HUB_PORT", "8000"))
BRIDGE_PORT = int(ENV.get("BRIDGE_PORT", "6000"))
SOLR_PORT = int(ENV.get("SOLR_PORT", "8983"))
HUB_API_PORT = int(ENV.get("HUB_API_PORT", "8081"))
PROXY_API_PORT = int(ENV.get("PROXY_API_PORT", "8001"))
CKAN_DB = ENV.get("CKAN_DB", "ckan_dev")
REDIS_DB = ENV.get("REDIS_DB", "0")
SESSION_USER = ENV.get("JUPYTERNOTEBOOK_SESSION_USER", "jupyter-session")
STORAGE = STACK_DIR / "storage"

CKAN_URL = f"http://127.0.0.1:{CKAN_PORT}"
HUB_URL = f"http://127.0.0.1:{HUB_PORT}"
BRIDGE_URL = f"http://127.0.0.1:{BRIDGE_PORT}"

PROCS = ("solr", "ckan", "hub")


def log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def secret(name: str) -> str:
    """A random secret made once per stack directory and kept (mode 0600)."""
    path = STACK_DIR / f"{name}.secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def prepare_dirs() -> None:
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    # others may traverse (session homes live below) but not list; the
    # files with secrets are 0600 on their own
    STACK_DIR.chmod(0o711)
    (STACK_DIR / "logs").mkdir(mode=0o700, exist_ok=True)
    (STACK_DIR / "ckan-storage").mkdir(mode=0o700, exist_ok=True)
    (STACK_DIR / "hub").mkdir(mode=0o700, exist_ok=True)
    STORAGE.mkdir(mode=0o711, exist_ok=True)


def ensure_session_user() -> None:
    try:
        pwd.getpwnam(SESSION_USER)
    except KeyError:
        log(f"creating the unprivileged system user {SESSION_USER}")
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", SESSION_USER],
            check=True,
        )


def plugin_env() -> dict:
    """The plugin's settings for this stack; the caller's environment wins."""
    env = {
        "CKAN_JUPYTERNOTEBOOK_URL": HUB_URL,
        "CKAN_API_JUPYTERHUB": BRIDGE_URL,
        "CKAN_JUPYTERHUB_API_TOKEN": secret("bridge_token"),
        "CKAN_STORAGE_NOTEBOOK": str(STORAGE),
    }
    env.update({k: v for k, v in ENV.items() if k.startswith("CKAN_JUPYTER") or k in (
        "CKAN_NETWORK", "CKAN_API_JUPYTERHUB", "CKAN_STORAGE_NOTEBOOK")})
    return env


def write_ckan_ini() -> Path:
    ini = STACK_DIR / "ckan.ini"
    template = string.Template((ROOT / "dev" / "ckan.ini.in").read_text())
    ini.write_text(template.substitute(
        CKAN_PORT=CKAN_PORT,
        SITE_URL=CKAN_URL,
        DB_URL=f"postgresql://ckan_default:pass@localhost/{CKAN_DB}",
        SOLR_URL=f"http://127.0.0.1:{SOLR_PORT}/solr/ckan",
        REDIS_URL=f"redis://localhost:6379/{REDIS_DB}",
        STORAGE_PATH=str(STACK_DIR / "ckan-storage"),
        SECRET=secret("ckan"),
        BRIDGE_URL=BRIDGE_URL,
        HUB_URL=HUB_URL,
        API_TOKEN=secret("bridge_token"),
    ))
    ini.chmod(0o600)
    return ini


def pidfile(name: str) -> Path:
    return STACK_DIR / f"{name}.pid"


def running(name: str) -> int | None:
    try:
        pid = int(pidfile(name).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def spawn(name: str, cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> None:
    if running(name):
        log(f"{name} is already running")
        return
    out = open(STACK_DIR / "logs" / f"{name}.log", "ab")
    proc = subprocess.Popen(
        cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**ENV, **(env or {})}, cwd=str(cwd or ROOT), start_new_session=True,
    )
    pidfile(name).write_text(str(proc.pid))
    log(f"started {name} (pid {proc.pid})")


def answers(url: str, headers: dict | None = None) -> bool:
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_for(what: str, url: str, headers: dict | None = None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(url, headers):
            return
        time.sleep(0.3)
    raise SystemExit(f"[stack] {what} did not answer at {url} within {timeout:.0f} s; "
                     f"see {STACK_DIR / 'logs'}")


def ckan(ini: Path, *args: str, capture: bool = False) -> str:
    res = subprocess.run([str(VENV_BIN / "ckan"), "-c", str(ini), *args], check=True,
                         capture_output=capture, text=True, env={**ENV, **plugin_env()})
    return res.stdout if capture else ""


def up() -> None:
    prepare_dirs()
    ensure_session_user()
    ini = write_ckan_ini()
    env = plugin_env()

    spawn("solr", [sys.executable, str(ROOT / "dev" / "solr_standin.py"), "--port", str(SOLR_PORT)])
    wait_for("the Solr stand-in", f"http://127.0.0.1:{SOLR_PORT}/solr/ckan/admin/ping?wt=json", timeout=30)

    log("initialising the CKAN database")
    ckan(ini, "db", "init")
    seed_out = subprocess.run(
        [sys.executable, str(ROOT / "dev" / "seed.py"), "--config", str(ini)],
        check=True, capture_output=True, text=True, env={**ENV, **env},
    ).stdout
    seed = json.loads(seed_out.strip().splitlines()[-1])

    hub_env = {
        **env,
        "JUPYTERNOTEBOOK_STATE_DIR": str(STACK_DIR / "hub"),
        "JUPYTERNOTEBOOK_HUB_PORT": str(HUB_API_PORT),
        "JUPYTERNOTEBOOK_PROXY_API_PORT": str(PROXY_API_PORT),
        "JUPYTERNOTEBOOK_SESSION_USER": SESSION_USER,
        "CKAN_SITE_URL": CKAN_URL,
        "NODE_PATH": "/usr/share/nodejs",
    }
    spawn("hub", [str(VENV_BIN / "jupyterhub"), "-f",
                  str(ROOT / "jupyterhub_service" / "jupyterhub_config.py")],
          env=hub_env, cwd=STACK_DIR / "hub")
    spawn("ckan", [str(VENV_BIN / "gunicorn"), "--workers", "1", "--threads", "16",
                   "--timeout", "300", "--bind", f"127.0.0.1:{CKAN_PORT}",
                   "--chdir", str(ROOT / "dev"), "wsgi:application"],
          env={**env, "CKAN_INI": str(ini)})

    wait_for("CKAN", f"{CKAN_URL}/api/3/action/status_show")
    wait_for("the hub", f"{HUB_URL}/hub/health")
    token = env["CKAN_JUPYTERHUB_API_TOKEN"]
    wait_for("the bridge", f"{BRIDGE_URL}/api/health", {"Authorization": f"Bearer {token}"})

    creds = STACK_DIR / "credentials.env"
    creds.write_text("".join(f"{k}={v}\n" for k, v in {
        "CKAN_URL": CKAN_URL,
        "HUB_URL": HUB_URL,
        "BRIDGE_URL": BRIDGE_URL,
        "CKAN_SYSADMIN": seed["sysadmin"],
        "CKAN_SYSADMIN_PASSWORD": seed["password"],
        "CKAN_API_TOKEN": seed["api_token"],
        "CKAN_JUPYTERHUB_API_TOKEN": token,
        "DEMO_DATASET": seed["dataset"],
    }.items()))
    creds.chmod(0o600)
    log(f"CKAN {CKAN_URL}  hub {HUB_URL}  bridge {BRIDGE_URL}")
    log(f"demo dataset {CKAN_URL}/dataset/{seed['dataset']}; credentials in {creds}")


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        pass


def stop() -> None:
    for name in ("ckan", "hub", "solr"):
        pid = running(name)
        if pid:
            log(f"stopping {name} (pid {pid})")
            _kill_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and running(name):
                time.sleep(0.2)
            _kill_group(pid, signal.SIGKILL)
        pidfile(name).unlink(missing_ok=True)
    # what the hub started in process groups of their own: the proxy, the
    # bridge (both carry this stack's state dir in their environment) and
    # the session servers (running in homes below this stack's storage)
    marker = f"JUPYTERNOTEBOOK_STATE_DIR={STACK_DIR / 'hub'}".encode()
    sessions = str(STORAGE / "sessions") + "/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if marker in environ or cwd.startswith(sessions):
            _kill_group(int(proc.name), signal.SIGKILL)
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass
    _remove_session_containers()
    log("stopped")


def _remove_session_containers() -> None:
    if not shutil.which("docker"):
        return
    try:
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=ckanext-jupyternotebook.stack={STACK_DIR}"],
            capture_output=True, text=True, timeout=20,
        ).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        pass


def run() -> None:
    up()
    log("running; press Ctrl-C to stop")
    try:
        while all(running(n) for n in PROCS):
            time.sleep(1)
        log("a process of the stack exited; see the logs")
    except KeyboardInterrupt:
        pass
    finally:
        stop()


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "up"
    {"up": up, "run": run, "stop": stop}[command]()
