"""The processes a benchmark run starts: the portal stack (CKAN, hub, bridge)
through ``dev/stack.py``, a bare JupyterHub for comparison spawns, and the
hub + bridge with the no-op spawner for the simulated-scale run.

Ports sit in the 8090s/6090s so that a run never meets ``make dev`` (8000)
or ``make test`` (8050).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the dev package
from dev.stack import Stack, VENV_BIN, wait_for  # noqa: E402
from jupyterhub_service.session_home import give_home_a_uid  # noqa: E402

BENCH_DIR = ROOT / ".bench-stack"
HERE = Path(__file__).resolve().parent
BRIDGE_TOKEN = "bench-bridge-token-" + secrets.token_hex(8)
HUB_TOKEN = "bench-hub-token-" + secrets.token_hex(8)
SESSION_USER = "jupyter-session"


@dataclass
class BenchStack(Stack):
    """dev/stack.py's Stack, with the hub config file chosen by the benchmark."""

    hub_config: Path = ROOT / "jupyterhub_service" / "jupyterhub_config.py"

    def start_hub(self, **env) -> None:
        self.spawn("hub", [str(VENV_BIN / "jupyterhub"), "-f", str(self.hub_config)],
                   {**self.hub_env(), **env}, cwd=self.hub_state)
        wait_for("the hub", f"{self.hub_url}/hub/health", logs=self.logs)
        wait_for("the bridge", f"{self.bridge_url}/api/health",
                 {"Authorization": f"Bearer {self.token}"}, logs=self.logs)

    def write_ckan_ini(self) -> Path:
        """dev/ckan.ini.in plus the bench's own options: 20 simultaneous
        launches must all wait in one CKAN process (the product's default
        answers launches past 8 with "busy, try again")."""
        ini = super().write_ckan_ini()
        text = ini.read_text()
        anchor = "ckanext.jupyternotebook.api_token"
        at = text.index("\n", text.index(anchor)) + 1
        ini.write_text(text[:at] + "ckanext.jupyternotebook.max_launches_in_flight = 48\n"
                       + text[at:])
        return ini

    def running(self, name: str) -> int | None:
        # Stack.spawn drops its Popen, so a stopped child of this process
        # stays a zombie that os.kill(pid, 0) still finds: reap it first
        try:
            pid = int(self.pidfile(name).read_text())
            os.waitpid(pid, os.WNOHANG)
        except (OSError, ValueError):
            pass
        return super().running(name)

    @property
    def access_log(self) -> Path:
        return self.logs / "ckan-access.log"

    @property
    def hub_log(self) -> Path:
        return self.logs / "hub.log"


def portal_stack(max_upload_mb: int) -> BenchStack:
    """CKAN + hub + bridge with the local spawner and settings roomy enough
    for 20 simultaneous guests plus a pool of 20."""
    d = BENCH_DIR / "portal"
    access_log = d / "logs" / "ckan-access.log"
    return BenchStack(
        directory=d, ckan_port=5090, hub_port=8090, bridge_port=6090, solr_port=8995,
        hub_api_port=8091, proxy_api_port=8092, ckan_db="ckan_bench", redis_db="3",
        api_token=BRIDGE_TOKEN,
        extra_env={
            "CKAN_JUPYTERHUB_GUEST_RATE": "0",
            "CKAN_JUPYTERHUB_USER": "60",
            "CKAN_JUPYTERHUB_MAX_SESSIONS": "200",
            "CKAN_JUPYTERHUB_POOL_SIZE": "0",
            # CKAN's own upload limit (ckan.max_resource_size), in MB
            "CKAN_MAX_UPLOAD_SIZE_MB": str(max_upload_mb),
            # every response CKAN sends: bytes and seconds to stream them
            "GUNICORN_CMD_ARGS": f"-c {HERE / 'gunicorn_hooks.py'}",
            "BENCH_CKAN_ACCESS_LOG": str(access_log),
        },
    )


def scale_stack() -> BenchStack:
    """Hub + bridge with the no-op spawner; no CKAN."""
    return BenchStack(
        directory=BENCH_DIR / "scale", hub_port=8096, bridge_port=6096, solr_port=0,
        hub_api_port=8097, proxy_api_port=8098, api_token=BRIDGE_TOKEN,
        hub_config=HERE / "noop_hub_config.py",
        extra_env={
            "CKAN_JUPYTERHUB_GUEST_RATE": "0",
            "CKAN_JUPYTERHUB_USER": "50",
            "CKAN_JUPYTERHUB_MAX_SESSIONS": "5000",
            "CKAN_JUPYTERHUB_POOL_SIZE": "0",
        },
    )


# -- CKAN -------------------------------------------------------------------

_FALLBACK_INI = """\
[DEFAULT]
debug = false

[app:main]
use = egg:ckan
SECRET_KEY = ${SECRET}
WTF_CSRF_SECRET_KEY = ${SECRET}
api_token.jwt.encode.secret = string:${SECRET}
api_token.jwt.decode.secret = string:${SECRET}
ckan.site_url = ${SITE_URL}
ckan.site_id = bench
sqlalchemy.url = ${DB_URL}
ckan.redis.url = ${REDIS_URL}
solr_url = ${SOLR_URL}
ckan.storage_path = ${STORAGE_PATH}
ckan.plugins = jupyternotebook
ckan.views.default_views =
ckanext.jupyternotebook.api_url = ${BRIDGE_URL}
ckanext.jupyternotebook.hub_url = ${HUB_URL}
ckanext.jupyternotebook.api_token = ${API_TOKEN}

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s
"""


def write_ckan_ini(stack: BenchStack) -> None:
    """dev/ckan.ini.in when it exists; otherwise a minimal config of our own."""
    if (ROOT / "dev" / "ckan.ini.in").exists():
        stack.write_ckan_ini()
        return
    import string

    stack.ini.write_text(string.Template(_FALLBACK_INI).substitute(
        SITE_URL=stack.ckan_url,
        DB_URL=f"postgresql://ckan_default:pass@localhost/{stack.ckan_db}",
        SOLR_URL=f"http://127.0.0.1:{stack.solr_port}/solr/ckan",
        REDIS_URL=f"redis://localhost:6379/{stack.redis_db}",
        STORAGE_PATH=str(stack.directory / "ckan-storage"),
        SECRET=stack.secret("ckan"),
        BRIDGE_URL=stack.bridge_url,
        HUB_URL=stack.hub_url,
        API_TOKEN=stack.token,
    ))
    stack.ini.chmod(0o600)


def init_ckan(stack: BenchStack) -> str:
    """A fresh CKAN database with one sysadmin; returns its API token."""
    write_ckan_ini(stack)
    env = {**os.environ, **stack.plugin_env()}
    ckan = [str(VENV_BIN / "ckan"), "-c", str(stack.ini)]

    def run(*args):
        return subprocess.run([*ckan, *args], check=True, env=env, capture_output=True,
                              text=True).stdout

    run("db", "clean", "--yes")
    run("db", "init")
    run("db", "pending-migrations", "--apply")
    run("user", "add", "benchadmin", "email=bench@example.org",
        "password=" + secrets.token_urlsafe(16))
    run("sysadmin", "add", "benchadmin")
    out = run("user", "token", "add", "benchadmin", "bench")
    return out.strip().splitlines()[-1].strip()


class CKAN:
    """CKAN's action API as the benchmark's sysadmin."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token
        self.http = requests.Session()
        self.http.headers["Authorization"] = token

    def action(self, action_name: str, **data) -> dict:
        r = self.http.post(f"{self.url}/api/3/action/{action_name}", json=data, timeout=60)
        if r.status_code != 200:
            raise RuntimeError(f"{action_name}: {r.status_code} {r.text[:300]}")
        return r.json()["result"]

    def dataset_with_upload(self, name: str, org: str, path: Path, fmt: str = "CSV") -> dict:
        ds = self.action("package_create", name=name, title=name, owner_org=org, private=False)
        # curl streams the file from disk: a 1 GiB upload never sits in memory
        out = subprocess.run(
            ["curl", "-sS", "--fail", "-H", f"Authorization: {self.token}",
             "-F", f"package_id={ds['id']}", "-F", f"name={path.name}", "-F", f"format={fmt}",
             "-F", f"upload=@{path}", f"{self.url}/api/3/action/resource_create"],
            check=True, capture_output=True, text=True, timeout=900,
        )
        del out
        return self.action("package_show", id=ds["id"])


# -- processes --------------------------------------------------------------

def bridge_process(stack: BenchStack) -> psutil.Process | None:
    hub = stack.running("hub")
    if not hub:
        return None
    for p in psutil.Process(hub).children(recursive=True):
        try:
            if "jupyterhub_service.bridge" in " ".join(p.cmdline()):
                return p
        except psutil.Error:
            continue
    return None


def session_servers(hub_pid: int) -> dict[str, psutil.Process]:
    """Single-user server processes started by this hub, by
    ``<hub user>/<server name>``."""
    found = {}
    for p in psutil.Process(hub_pid).children(recursive=False):
        try:
            env = p.environ()
        except psutil.Error:
            continue
        if "JUPYTERHUB_USER" in env:
            found[f"{env['JUPYTERHUB_USER']}/{env.get('JUPYTERHUB_SERVER_NAME', '')}"] = p
    return found


def tree_memory(proc: psutil.Process) -> tuple[int, int | None]:
    """RSS and PSS (None when unavailable) of a process and its children."""
    rss, pss = 0, 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            full = p.memory_full_info()
            rss += full.rss
            pss = None if pss is None or not hasattr(full, "pss") else pss + full.pss
        except psutil.AccessDenied:
            rss += p.memory_info().rss
            pss = None
        except psutil.Error:
            continue
    return rss, pss


# -- the bare hub -----------------------------------------------------------

class BareHub:
    """A JupyterHub with the product's spawner and no bridge, spawned
    through the REST API with an admin-scoped service token."""

    def __init__(self, spawner: str = "local", directory: Path | None = None,
                 port: int = 8093, api_port: int = 8094, proxy_api_port: int = 8095,
                 extra_env: dict | None = None):
        self.directory = (directory or BENCH_DIR / f"bare-{spawner}").resolve()
        self.port, self.api_port, self.proxy_api_port = port, api_port, proxy_api_port
        self.spawner = spawner
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {HUB_TOKEN}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sessions_root(self) -> Path:
        return self.directory / "sessions"

    @property
    def log_path(self) -> Path:
        return self.directory / "hub.log"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o711)
        self.sessions_root.mkdir(mode=0o711, exist_ok=True)
        env = {
            **os.environ, **self.extra_env,
            "BENCH_BARE_STATE": str(self.directory / "state"),
            "BENCH_BARE_PORT": str(self.port),
            "BENCH_BARE_API_PORT": str(self.api_port),
            "BENCH_BARE_PROXY_API_PORT": str(self.proxy_api_port),
            "BENCH_BARE_SPAWNER": self.spawner,
            "BENCH_HUB_TOKEN": HUB_TOKEN,
            "BENCH_SESSIONS_ROOT": str(self.sessions_root),
            "BENCH_SESSION_USER": SESSION_USER,
            "NODE_PATH": "/usr/share/nodejs",
        }
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "jupyterhub"), "-f", str(HERE / "bare_hub_config.py")],
            stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=str(self.directory), start_new_session=True,
        )
        wait_for("the bare hub", f"{self.url}/hub/health", logs=self.log_path)

    def stop(self) -> None:
        if self.proc is None:
            return
        _stop_tree(self.proc.pid)
        self.proc = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def api(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 180)
        return self.http.request(method, f"{self.url}/hub/api{path}", **kw)

    def prepare_home(self, name: str) -> dict:
        """What the bridge would put in user_options: a session home (and, for
        containers, empty data and seed directories)."""
        sdir = self.sessions_root / name
        home = sdir / "home"
        (home / "data").mkdir(parents=True, exist_ok=True)
        os.chmod(sdir, 0o711)
        if self.spawner == "local":
            # each local session runs as a uid of its own, given to its home
            # as the bridge's scratch does (the spawner refuses a home without)
            give_home_a_uid(home, self.sessions_root)
        else:
            pw = pwd.getpwnam(SESSION_USER)
            os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o755)
        # a container copies its seed into a home where ~/data is already a
        # read-only mount: the seed must not hold a data directory itself
        seed = sdir / "seed"
        seed.mkdir(mode=0o755, exist_ok=True)
        return {"home_dir": str(home), "data_dir": str(home / "data"),
                "home_seed_dir": str(seed), "session_id": name,
                "limits": {"cpu_percent": 50, "memory_limit": "1G", "pids": 256},
                "open_path": ""}

    def remove(self, user: str) -> None:
        self.api("DELETE", f"/users/{user}/servers/s", json={"remove": True})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = self.api("GET", f"/users/{user}")
            if r.status_code != 200 or not r.json().get("servers"):
                break
            time.sleep(0.2)
        self.api("DELETE", f"/users/{user}")
        shutil.rmtree(self.sessions_root / user, ignore_errors=True)


def _stop_tree(pid: int) -> None:
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


def remove_network(name: str) -> None:
    """The benchmark's sessions network, with whatever is still on it and
    the host firewall rules its hub put on it."""
    import docker

    from jupyterhub_service.session_network import remove_sessions_network

    client = docker.APIClient()
    try:
        remove_sessions_network(client, name)
    finally:
        client.close()
