"""Start and stop the development stack: the Solr stand-in, CKAN, and the hub
with its bridge. ``make dev``, ``make dev-up`` and ``make dev-stop`` call it,
and the tests start the same pieces on other ports through ``Stack``.

    python dev/stack.py up      # start in the background, return once all answer
    python dev/stack.py run     # start, then stay in the foreground until Ctrl-C
    python dev/stack.py stop    # stop everything this stack started

Ports, directories and the database come from the environment (STACK_DIR,
CKAN_PORT, HUB_PORT, BRIDGE_PORT, SOLR_PORT, HUB_API_PORT, PROXY_API_PORT,
CKAN_DB, REDIS_DB); the plugin's settings come from the CKAN_* variables of
the settings table and reach CKAN and the hub alike.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# CKAN 2.10 and 2.11 cannot share an environment with the hub, so each half
# may live in its own (dev/environments.sh makes them): HUB_VENV and CKAN_VENV
# name them, both default to the environment running this. CKAN_DB_SUFFIX
# gives each CKAN line databases of its own (2.10 cannot read one that 2.12
# has upgraded).
VENV_BIN = Path(os.environ.get("HUB_VENV") or Path(sys.executable).parent.parent) / "bin"
CKAN_BIN = Path(os.environ.get("CKAN_VENV") or Path(sys.executable).parent.parent) / "bin"
CKAN_DB_SUFFIX = os.environ.get("CKAN_DB_SUFFIX", "")
PLUGIN_VARS = ("CKAN_JUPYTER", "CKAN_NETWORK", "CKAN_API_JUPYTERHUB", "CKAN_STORAGE_NOTEBOOK")


def log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def answers(url: str, headers: dict | None = None) -> bool:
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def require_free_ports(what: str, *ports: int) -> None:
    """Refuse to start ``what`` on a port something else already holds: a
    process left by another stack (a killed test run's hub, say) would
    otherwise answer in its place, and the tests would talk to it."""
    def held() -> list[int]:
        taken = []
        for port in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    taken.append(port)
        return taken

    # a stack that was just stopped may take a moment to let go (the proxy
    # leaves after the hub)
    deadline = time.monotonic() + 15
    while (taken := held()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if taken:
        raise RuntimeError(
            f"cannot start {what}: 127.0.0.1 port(s) {', '.join(map(str, taken))} already in use "
            "(another stack still running? `ss -ltnp` names the process)")


def wait_for(what: str, url: str, headers: dict | None = None, timeout: float = 120,
             logs: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(url, headers):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not answer at {url} within {timeout:.0f} s; see {logs}")


def _kill_group(pid: int, sig: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, sig)
        except OSError:
            pass


@dataclass
class Stack:
    directory: Path
    ckan_port: int = 5000
    hub_port: int = 8000
    bridge_port: int = 6000
    solr_port: int = 8983
    hub_api_port: int = 8081
    proxy_api_port: int = 8001
    ckan_db: str = "ckan_dev"
    redis_db: str = "0"
    session_user: str = "jupyter-session"
    api_token: str | None = None
    extra_env: dict = field(default_factory=dict)

    def __post_init__(self):
        self.directory = Path(self.directory).resolve()

    @classmethod
    def from_environment(cls) -> "Stack":
        e = os.environ
        return cls(
            directory=Path(e.get("STACK_DIR", ROOT / ".dev")),
            ckan_port=int(e.get("CKAN_PORT", "5000")),
            hub_port=int(e.get("HUB_PORT", "8000")),
            bridge_port=int(e.get("BRIDGE_PORT", "6000")),
            solr_port=int(e.get("SOLR_PORT", "8983")),
            hub_api_port=int(e.get("HUB_API_PORT", "8081")),
            proxy_api_port=int(e.get("PROXY_API_PORT", "8001")),
            ckan_db=e.get("CKAN_DB", "ckan_dev"),
            redis_db=e.get("REDIS_DB", "0"),
            session_user=e.get("JUPYTERNOTEBOOK_SESSION_USER", "jupyter-session"),
            extra_env={k: v for k, v in e.items() if k.startswith(PLUGIN_VARS)},
        )

    # -- places -------------------------------------------------------------

    @property
    def ckan_url(self) -> str:
        return f"http://127.0.0.1:{self.ckan_port}"

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    @property
    def bridge_url(self) -> str:
        return f"http://127.0.0.1:{self.bridge_port}"

    @property
    def storage(self) -> Path:
        return self.directory / "storage"

    @property
    def hub_state(self) -> Path:
        return self.directory / "hub"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def ini(self) -> Path:
        return self.directory / "ckan.ini"

    def secret(self, name: str) -> str:
        """A random secret made once per stack directory and kept (0600)."""
        path = self.directory / f"{name}.secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def token(self) -> str:
        return self.api_token or self.secret("bridge_token")

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # others may traverse (session homes live below) but not list; files
        # holding secrets are 0600 on their own
        self.directory.chmod(0o711)
        for d in (self.logs, self.directory / "ckan-storage", self.hub_state):
            d.mkdir(mode=0o700, exist_ok=True)
        self.storage.mkdir(mode=0o711, exist_ok=True)
        try:
            pwd.getpwnam(self.session_user)
        except KeyError:
            log(f"creating the unprivileged system user {self.session_user}")
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", self.session_user],
                check=True,
            )

    def plugin_env(self) -> dict:
        """The plugin's settings for this stack; the caller's values win."""
        return {
            "CKAN_JUPYTERNOTEBOOK_URL": self.hub_url,
            "CKAN_API_JUPYTERHUB": self.bridge_url,
            "CKAN_JUPYTERHUB_API_TOKEN": self.token,
            "CKAN_STORAGE_NOTEBOOK": str(self.storage),
            **self.extra_env,
        }

    # -- processes ----------------------------------------------------------

    def pidfile(self, name: str) -> Path:
        return self.directory / f"{name}.pid"

    def running(self, name: str) -> int | None:
        try:
            pid = int(self.pidfile(name).read_text())
        except (OSError, ValueError):
            return None
        try:
            # a child of this process that exited is a zombie until reaped,
            # and os.kill(pid, 0) still succeeds on a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return None
        except ChildProcessError:
            pass  # not our child (another `make dev-stop`)
        try:
            os.kill(pid, 0)
            return pid
        except OSError:
            return None

    def spawn(self, name: str, cmd: list[str], env: dict, cwd: Path | None = None) -> None:
        if self.running(name):
            return
        out = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **env}, cwd=str(cwd or ROOT), start_new_session=True,
        )
        self.pidfile(name).write_text(str(proc.pid))

    def start_solr(self) -> None:
        self.spawn("solr", [sys.executable, str(ROOT / "dev" / "solr_standin.py"),
                            "--port", str(self.solr_port)], {})
        wait_for("the Solr stand-in",
                 f"http://127.0.0.1:{self.solr_port}/solr/ckan/admin/ping?wt=json",
                 timeout=30, logs=self.logs)

    def write_ckan_ini(self) -> Path:
        template = string.Template((ROOT / "dev" / "ckan.ini.in").read_text())
        self.ini.write_text(template.substitute(
            CKAN_PORT=self.ckan_port,
            SITE_URL=self.ckan_url,
            DB_URL=f"postgresql://ckan_default:pass@localhost/{self.ckan_db}{CKAN_DB_SUFFIX}",
            SOLR_URL=f"http://127.0.0.1:{self.solr_port}/solr/ckan",
            REDIS_URL=f"redis://localhost:6379/{self.redis_db}",
            STORAGE_PATH=str(self.directory / "ckan-storage"),
            SECRET=self.secret("ckan"),
            BRIDGE_URL=self.bridge_url,
            HUB_URL=self.hub_url,
            API_TOKEN=self.token,
        ))
        self.ini.chmod(0o600)
        return self.ini

    def init_ckan(self) -> dict:
        """Write ckan.ini, initialise the database and seed the demo; returns
        the seed's answer (sysadmin, password, api_token, dataset)."""
        self.write_ckan_ini()
        env = {**os.environ, **self.plugin_env()}
        subprocess.run([str(CKAN_BIN / "ckan"), "-c", str(self.ini), "db", "init"],
                       check=True, env=env, capture_output=True)
        out = subprocess.run(
            [str(CKAN_BIN / "python"), str(ROOT / "dev" / "seed.py"), "--config", str(self.ini)],
            check=True, capture_output=True, text=True, env=env,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])

    def start_ckan(self) -> None:
        require_free_ports("CKAN", self.ckan_port)
        self.spawn("ckan", [str(CKAN_BIN / "gunicorn"), "--workers", "1", "--threads", "64",
                            "--timeout", "300", "--bind", f"127.0.0.1:{self.ckan_port}",
                            "--chdir", str(ROOT / "dev"), "wsgi:application"],
                   {**self.plugin_env(), "CKAN_INI": str(self.ini)})
        wait_for("CKAN", f"{self.ckan_url}/api/3/action/status_show", logs=self.logs)

    def start_reports(self, workers: int | None = None, interval: float = 5.0) -> None:
        """Report runs (issue 14): ``max_report_runs`` CKAN workers on the
        jupyter-reports queue, and the report scheduler."""
        env = {**self.plugin_env(), "CKAN_INI": str(self.ini)}
        if workers is None:
            workers = int(env.get("CKAN_JUPYTERHUB_MAX_REPORT_RUNS") or 2)
        ckan = [str(CKAN_BIN / "ckan"), "-c", str(self.ini)]
        for number in range(1, workers + 1):
            self.spawn(f"report-worker-{number}", [*ckan, "jobs", "worker", "jupyter-reports"], env)
        self.spawn("report-scheduler", [*ckan, "jupyter", "scheduler", "--interval", str(interval)], env)

    def stop_reports(self) -> None:
        for pidfile in sorted(self.directory.glob("report-*.pid")):
            self.stop_process(pidfile.stem)

    def hub_env(self) -> dict:
        return {
            **self.plugin_env(),
            "JUPYTERNOTEBOOK_STATE_DIR": str(self.hub_state),
            "JUPYTERNOTEBOOK_HUB_PORT": str(self.hub_api_port),
            "JUPYTERNOTEBOOK_PROXY_API_PORT": str(self.proxy_api_port),
            "JUPYTERNOTEBOOK_SESSION_USER": self.session_user,
            "NODE_PATH": "/usr/share/nodejs",
            # the hub runs `alembic` by name when it upgrades its database
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def start_hub(self, *hub_args: str, **env) -> None:
        """``hub_args``: extra command-line options for the hub (a test's
        ``--JupyterHub.api_page_max_limit=2``)."""
        require_free_ports("the hub", self.hub_port, self.hub_api_port, self.proxy_api_port,
                           self.bridge_port, self.bridge_port + 1)
        self.spawn("hub", [str(VENV_BIN / "jupyterhub"), "-f",
                           str(ROOT / "jupyterhub_service" / "jupyterhub_config.py"), *hub_args],
                   {**self.hub_env(), **env}, cwd=self.hub_state)
        wait_for("the hub", f"{self.hub_url}/hub/health", logs=self.logs)
        wait_for("the bridge", f"{self.bridge_url}/api/health",
                 {"Authorization": f"Bearer {self.token}"}, logs=self.logs)

    def stop_process(self, name: str) -> None:
        pid = self.running(name)
        if pid:
            _kill_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.running(name):
                time.sleep(0.1)
            _kill_group(pid, signal.SIGKILL)
        self.pidfile(name).unlink(missing_ok=True)

    def stop_hub(self) -> None:
        self.stop_process("hub")
        self._kill_strays()

    def _kill_strays(self) -> None:
        """What the hub started in process groups of their own: the proxy
        and the bridge (they carry this stack's state dir in their
        environment) and session servers (running in homes of this stack)."""
        marker = f"JUPYTERNOTEBOOK_STATE_DIR={self.hub_state}".encode()
        sessions = str(self.storage / "sessions") + "/"
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
        self._remove_session_containers()
        self._unmount_storage()

    def _unmount_storage(self) -> None:
        """Mounts a killed bridge or hub left under this stack's storage
        (workspaces, session homes), deepest first, so that removing the
        storage never walks into them."""
        prefix = str(self.storage) + "/"
        try:
            with open("/proc/self/mounts") as f:
                points = [line.split()[1] for line in f]
        except OSError:
            return
        for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)

    def _remove_session_containers(self) -> None:
        """Session containers whose mounts come from this stack's storage."""
        if not shutil.which("docker"):
            return
        try:
            ids = subprocess.run(
                ["docker", "ps", "-aq", "--filter", "label=org.ckan.jupyternotebook.session"],
                capture_output=True, text=True, timeout=20,
            ).stdout.split()
            if not ids:
                return
            info = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True,
                                             text=True, timeout=30).stdout or "[]")
            ours = [c["Id"] for c in info
                    if any(str(m.get("Source", "")).startswith(str(self.storage) + "/")
                           for m in c.get("Mounts", []))]
            if ours:
                subprocess.run(["docker", "rm", "-f", "-v", *ours], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError, ValueError):
            pass

    def stop(self) -> None:
        self.stop_reports()
        for name in ("ckan", "hub", "solr"):
            self.stop_process(name)
        self._kill_strays()

    # -- the dev stack ------------------------------------------------------

    def up(self) -> None:
        self.prepare()
        self.start_solr()
        log("initialising the CKAN database and the demo data")
        seed = self.init_ckan()
        self.start_hub(CKAN_SITE_URL=self.ckan_url)
        self.start_ckan()
        self.start_reports()
        creds = self.directory / "credentials.env"
        creds.write_text("".join(f"{k}={v}\n" for k, v in {
            "CKAN_URL": self.ckan_url,
            "HUB_URL": self.hub_url,
            "BRIDGE_URL": self.bridge_url,
            "CKAN_SYSADMIN": seed["sysadmin"],
            "CKAN_SYSADMIN_PASSWORD": seed["password"],
            "CKAN_API_TOKEN": seed["api_token"],
            "CKAN_JUPYTERHUB_API_TOKEN": self.token,
            "DEMO_DATASET": seed["dataset"],
        }.items()))
        creds.chmod(0o600)
        log(f"CKAN {self.ckan_url}   hub {self.hub_url}   bridge {self.bridge_url}")
        log(f"demo dataset: {self.ckan_url}/dataset/{seed['dataset']}")
        log(f"sysadmin {seed['sysadmin']}; credentials in {creds}")


def main(argv: list[str]) -> None:
    stack = Stack.from_environment()
    command = argv[1] if len(argv) > 1 else "up"
    if command == "stop":
        stack.stop()
        log("stopped")
        return
    try:
        stack.up()
    except (RuntimeError, subprocess.CalledProcessError) as e:
        log(f"failed: {e}")
        stack.stop()
        raise SystemExit(1)
    if command == "run":
        log("running; press Ctrl-C to stop")
        try:
            while all(stack.running(n) for n in ("solr", "ckan", "hub")):
                time.sleep(1)
            log(f"a process of the stack exited; see {stack.logs}")
        except KeyboardInterrupt:
            pass
        finally:
            stack.stop()
            log("stopped")


if __name__ == "__main__":
    main(sys.argv)
