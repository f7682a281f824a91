"""The pieces the docker tests share: a real hub process, session dirs, a wheel."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def compose_command() -> list[str]:
    """Debian's docker-compose (v1), else the compose plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("neither docker-compose nor docker compose is installed")


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Hub:
    """A real JupyterHub process on the host, driven through its REST API."""

    def __init__(self, workdir: Path, spawner: str, sessions_network: str,
                 backend_network: str, image: str, hub_image: str | None = None):
        """With ``hub_image``, the hub runs in a container of that image on
        the sessions network (swarm's way); otherwise on the host."""
        self.workdir = workdir
        self.hub_image = hub_image
        self.container_name = f"jn-test-hub-{secrets.token_hex(3)}"
        self.spawner = spawner
        self.sessions_network = sessions_network
        self.port = free_port()
        self.token = secrets.token_hex(32)
        self.url = f"http://127.0.0.1:{self.port}"
        in_container = hub_image is not None
        bind_url = "http://0.0.0.0:8000" if in_container else self.url
        self.storage = workdir / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.storage.chmod(0o755)
        config = workdir / "jupyterhub_config.py"
        config.write_text(textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(REPO)!r})
            from types import SimpleNamespace
            from jupyterhub_service.docker_spawner import docker_spawner_config

            c = get_config()
            settings = SimpleNamespace(
                spawner={spawner!r},
                network={backend_network!r},
                sessions_network={sessions_network!r},
                singleuser_image={image!r},
                cpu_percent=50,
                memory_limit="1G",
                storage_root={str(self.storage)!r},
            )
            docker_spawner_config(
                c, settings, hub_in_container={in_container!r},
                hub_host={self.container_name!r},
            )
            c.JupyterHub.hub_port = {free_port()}
            c.JupyterHub.bind_url = {bind_url!r}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
            c.ConfigurableHTTPProxy.command = ["/usr/bin/configurable-http-proxy"]
            c.JupyterHub.db_url = "sqlite:///{workdir}/jupyterhub.sqlite"
            c.JupyterHub.cookie_secret_file = "{workdir}/cookie_secret"
            c.JupyterHub.pid_file = "{workdir}/jupyterhub.pid"
            c.ConfigurableHTTPProxy.pid_file = "{workdir}/proxy.pid"
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.JupyterHub.allow_named_servers = True
            c.JupyterHub.named_server_limit_per_user = 0
            c.JupyterHub.cleanup_servers = True
            c.Spawner.start_timeout = 180
            c.Spawner.http_timeout = 120
            c.JupyterHub.services = [{{"name": "tester", "api_token": {self.token!r}}}]
            c.JupyterHub.load_roles = [{{
                "name": "tester",
                "scopes": ["admin:users", "admin:servers", "access:servers"],
                "services": ["tester"],
            }}]
        """))
        self.log_path = workdir / "jupyterhub.log"
        self._log = open(self.log_path, "wb")
        if in_container:
            self._run_container(config)
        else:
            self._run_process(config)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {self.token}"
        try:
            wait_for(self._answers, 90, what="the hub to answer")
        except (TimeoutError, AssertionError):
            log = self.log()
            self.stop()
            raise AssertionError("hub did not start:\n" + log) from None

    def _run_process(self, config: Path):
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(config)],
            cwd=self.workdir,
            # Debian's configurable-http-proxy finds its modules there even
            # under a newer Node.js than Debian's
            env={**os.environ, "NODE_PATH": "/usr/share/nodejs"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _run_container(self, config: Path):
        # The repository's code is mounted over the image's copy, the Docker
        # socket so that the hub can create services; the work dir at the
        # same path, so that host paths in user_options mean the same there.
        self.proc = None
        subprocess.run(
            ["docker", "run", "-d", "--name", self.container_name,
             "--hostname", self.container_name,
             "--network", self.sessions_network,
             "-p", f"127.0.0.1:{self.port}:8000",
             "-v", "/var/run/docker.sock:/var/run/docker.sock",
             "-v", f"{REPO}:{REPO}:ro",
             "-v", f"{self.workdir}:{self.workdir}",
             "-e", f"PYTHONPATH={REPO}",
             "-w", str(self.workdir),
             self.hub_image, "jupyterhub", "-f", str(config)],
            check=True, capture_output=True, timeout=120,
        )

    def running(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}}", self.container_name],
            capture_output=True, text=True,
        )
        return out.stdout.strip() == "true"

    def log(self) -> str:
        if self.proc is None:
            out = subprocess.run(["docker", "logs", "--tail", "80", self.container_name],
                                 capture_output=True, text=True)
            return out.stdout + out.stderr
        return self.log_path.read_text(errors="replace")[-6000:]

    def _answers(self):
        if not self.running():
            raise AssertionError("hub exited:\n" + self.log())
        try:
            return self.http.get(f"{self.url}/hub/api/", timeout=5).ok
        except requests.RequestException:
            return False

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http.request(method, f"{self.url}/hub/api{path}", timeout=60, **kwargs)

    def spawn(self, user: str, server: str, user_options: dict, timeout: float = 240) -> dict:
        r = self.api("POST", f"/users/{user}")
        assert r.status_code in (201, 409), r.text
        r = self.api("POST", f"/users/{user}/servers/{server}", json=user_options)
        assert r.status_code in (201, 202), r.text

        def ready():
            u = self.api("GET", f"/users/{user}").json()
            srv = u.get("servers", {}).get(server)
            if srv and srv.get("ready"):
                return srv
            if not srv or not srv.get("pending"):
                if srv is None and time.monotonic() - started > 5:
                    raise AssertionError("spawn failed:\n" + self.log())
            return None

        started = time.monotonic()
        try:
            return wait_for(ready, timeout, interval=1, what="the server to be ready")
        except TimeoutError:
            raise AssertionError("server not ready:\n" + self.log()) from None

    def stop_server(self, user: str, server: str, timeout: float = 120):
        r = self.api("DELETE", f"/users/{user}/servers/{server}")
        assert r.status_code in (202, 204), r.text

        def stopped():
            u = self.api("GET", f"/users/{user}").json()
            return server not in u.get("servers", {})

        wait_for(stopped, timeout, interval=1, what="the server to stop")

    def server_get(self, user: str, server: str, path: str) -> requests.Response:
        return self.http.get(f"{self.url}/user/{user}/{server}/{path}", timeout=30)

    def stop(self):
        if self.proc is None:
            subprocess.run(["docker", "stop", "-t", "30", self.container_name],
                           capture_output=True)
            self._log.write(self.log().encode())
            subprocess.run(["docker", "rm", "-f", self.container_name], capture_output=True)
        elif self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def remove_sessions_network(docker_client, network: str) -> None:
    """A test's sessions network, what is still on it and the host firewall
    rules the hub put on it (session_network.remove_sessions_network)."""
    from jupyterhub_service import session_network

    session_network.remove_sessions_network(docker_client.api, network)


@contextlib.contextmanager
def docker_stack(name: str, hub_port: int, hub_stack, docker_client, run_id: str, *,
                 env: dict | None = None, hub_env: dict | None = None,
                 ckan: dict | None = None):
    """The repository's hub and bridge with the docker spawner, on ports of
    the module's own (hub ``hub_port``, its API and proxy API the next two,
    the bridge ``hub_port - 2000``) and a sessions network of this run's own;
    no CKAN unless ``ckan`` gives its port and databases, then CKAN too,
    seeded (yields ``(stack, seed)``). ``hub_stack`` holds the machine's
    test-stack lock. Afterwards nothing of it is left: processes, session
    containers, the network and its firewall rules."""
    from dev.stack import ROOT, Stack

    network = f"jn-test-sessions-{name}-{run_id}"
    stack = Stack(
        directory=ROOT / f".test-stack-docker-{name}",
        hub_port=hub_port, bridge_port=hub_port - 2000,
        hub_api_port=hub_port + 1, proxy_api_port=hub_port + 2,
        solr_port=hub_stack.solr_port, api_token=hub_stack.token,
        **(ckan or {}),
        extra_env={"CKAN_JUPYTERHUB_SPAWNER": "docker", "CKAN_JUPYTERHUB_GUEST_RATE": "1000",
                   "CKAN_JUPYTERHUB_MEMORY_LIMIT": "512M",
                   **(env or {}),
                   "JUPYTERNOTEBOOK_SESSIONS_NETWORK": network},
    )
    stack.stop()
    for stale in ("storage", "hub", "logs"):
        shutil.rmtree(stack.directory / stale, ignore_errors=True)
    stack.prepare()
    seed = stack.init_ckan() if ckan else None
    try:
        stack.start_hub(**(hub_env or {}))
        if ckan:
            stack.start_ckan()
        yield (stack, seed) if ckan else stack
    finally:
        stack.stop()
        remove_sessions_network(docker_client, network)


def session_containers(docker_client, session_id: str) -> list:
    """The containers of a bridge session (swarm: its task's container)."""
    from jupyterhub_service.container_labels import LABEL_SESSION

    return docker_client.containers.list(all=True, ignore_removed=True,
                                         filters={"label": f"{LABEL_SESSION}={session_id}"})


def assert_confined(container, memory: int, nano_cpus: int) -> None:
    """What `docker inspect` must show of any session container: its limits,
    no privileges or added capabilities, a read-only ~/data, no socket."""
    host = container.attrs["HostConfig"]
    assert host["Memory"] == memory
    assert host["NanoCpus"] == nano_cpus
    assert host["PidsLimit"] and host["PidsLimit"] > 0
    assert host["Privileged"] is False and not host.get("CapAdd")
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/home/jovyan/data"]["RW"] is False
    assert not any("docker.sock" in (m.get("Source") or "") for m in container.attrs["Mounts"])


def make_session_dirs(storage: Path, name: str, files: dict[str, str]) -> dict:
    """A data dir holding only ``files`` and a seed dir with start_here.ipynb."""
    data = storage / name / "data"
    seed = storage / name / "home"
    data.mkdir(parents=True)
    seed.mkdir(parents=True)
    for fname, content in files.items():
        p = data / fname
        p.write_text(content)
        p.chmod(0o444)
    notebook = {
        "cells": [{"cell_type": "code", "metadata": {}, "source": "import pandas",
                   "outputs": [], "execution_count": None}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    (seed / "start_here.ipynb").write_text(json.dumps(notebook))
    for d in (storage / name, data, seed):
        d.chmod(0o755)
    return {"data_dir": str(data), "home_seed_dir": str(seed)}


def user_options(dirs: dict, session_id: str = "s1") -> dict:
    return {
        "session_id": session_id,
        "dataset_id": "0c6f1d2e-dataset",
        "dataset_name": "demo",
        "expires_at": "2099-01-01T00:00:00Z",
        "limits": {"cpu_percent": 50, "memory_limit": "1G", "pids": 256},
        "open_path": "start_here.ipynb",
        **dirs,
    }


def tiny_wheel(directory: Path) -> Path:
    """A pure-Python wheel built by hand: nothing to download."""
    name, version = "tinypkg", "0.1"
    path = directory / f"{name}-{version}-py3-none-any.whl"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "ANSWER = 42\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},,\n" for p in files) + f"{dist_info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for p, content in files.items():
            z.writestr(p, content)
        z.writestr(f"{dist_info}/RECORD", record)
    return path


def put_file(container, src: Path, dest_dir: str = "/tmp"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tar.gettarinfo(str(src), arcname=src.name)
        info.uid, info.gid, info.mode = 1000, 100, 0o644
        with open(src, "rb") as f:
            tar.addfile(info, f)
    assert container.put_archive(dest_dir, buf.getvalue())


def exec_in(container, cmd: str) -> tuple[int, str]:
    code, out = container.exec_run(["sh", "-c", cmd], demux=False)
    return code, (out or b"").decode(errors="replace")


class Canary:
    """A TCP listener of the test's own on the host; counts connections."""

    def __init__(self, address: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.hits += 1
            conn.close()

    def close(self):
        self.sock.close()


def iptables_rules(*args: str) -> list[str]:
    from jupyterhub_service import egress

    out = subprocess.run([egress.iptables(), "-w", "-S", *args],
                         capture_output=True, text=True, check=True)
    return out.stdout.splitlines()
