"""Papermill inside a report run's session, and what it left there.

JupyterHub waits for an HTTP server, and papermill is none: a run is a
normal session server, and ``report_papermill.py`` runs in it as the
session's user, with the session's image, limits, ``~/data`` and egress:

- local spawner: a subprocess as the session's own uid (``session_home``),
  in its home, in a process group of its own;
- docker spawner: ``docker exec`` in the session's container, detached.

Either way it outlives a restart of the bridge: the run is followed by its
process (or exec) and the result file it writes last, both of which a new
bridge finds again from the handle kept in the run's record.

Results are copied out of the session into the run's results directory
(the bridge's own): the executed notebook and each regular file in
``output/`` up to ``max_resource_size``; nothing is followed through a
symlink, and a file too large is listed with ``skipped: "too_large"``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .container_labels import LABEL_HUB_USER, LABEL_SERVER
from .session_home import home_uid, kill_processes_of, open_dir

SCRIPT = Path(__file__).with_name("report_papermill.py").read_text()
REPORT_DIR = ".report"
OUTPUT_DIR = "output"
RESULT_MAX = 1 << 20  # result.json
MAX_ARTIFACTS = 100
NOTEBOOK_FILE = "notebook.ipynb"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def safe_artifact_name(name) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= 200 and name not in (".", "..")
            and "/" not in name and "\0" not in name and not name.startswith("."))


class Collected:
    """What a finished run left: its result file (None when the runner
    never wrote one) and the artifacts copied out."""

    def __init__(self, result: dict | None, artifacts: list[dict], notebook: bool):
        self.result = result
        self.artifacts = artifacts
        self.notebook = notebook


def _copy_capped(src, out, cap: int) -> bool:
    """Copy a readable binary stream into ``out``; False as soon as it is
    longer than ``cap`` bytes."""
    written = 0
    while True:
        chunk = src.read(1 << 20)
        if not chunk:
            return True
        written += len(chunk)
        if written > cap:
            return False
        out.write(chunk)


def _copy_to(src, dest: Path, cap: int) -> bool:
    """``_copy_capped`` into a new file ``dest``, removed when too long."""
    with open(dest, "wb") as out:
        if _copy_capped(src, out, cap):
            return True
    dest.unlink(missing_ok=True)
    return False


class LocalRunner:
    """Local spawner: the session's home is a host directory."""

    def __init__(self, scratch):
        self.scratch = scratch
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    def home(self, rec) -> Path:
        return self.scratch.path(rec.session_id) / "home"

    async def start(self, rec, config: dict) -> str:
        home = self.home(rec)
        uid = home_uid(home)
        if uid is None:
            raise RuntimeError("the run's home has no session uid")
        site = os.path.join(home, ".local", "pip")
        env = {
            "HOME": str(home), "USER": "jupyter-session", "SHELL": "/bin/bash", "LANG": "C.UTF-8",
            "PIP_TARGET": site, "PYTHONPATH": site,
            "PATH": os.pathsep.join([os.path.join(site, "bin"), os.path.dirname(sys.executable),
                                     "/usr/local/bin:/usr/bin:/bin"]),
            "JUPYTER_RUNTIME_DIR": os.path.join(home, ".local", "share", "jupyter", "runtime"),
            "IPYTHONDIR": os.path.join(home, ".ipython"),
        }

        def become_session_uid():
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SCRIPT, json.dumps(config), cwd=str(home), env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, preexec_fn=become_session_uid,
            start_new_session=True)
        self._procs[rec.id] = proc
        return str(proc.pid)

    async def finished(self, rec) -> bool:
        proc = self._procs.get(rec.id)
        if proc is not None:
            return proc.returncode is not None
        # a bridge restarted since: the process is no child of ours
        try:
            pid = int(rec.exec_handle)
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            alive = os.stat(f"/proc/{pid}").st_uid == home_uid(self.home(rec)) and state != "Z"
        except (OSError, ValueError, IndexError):
            alive = False
        return not alive

    async def kill(self, rec) -> None:
        uid = home_uid(self.home(rec))
        if uid is not None:
            await asyncio.get_running_loop().run_in_executor(None, kill_processes_of, uid)
        proc = self._procs.pop(rec.id, None)
        if proc is not None and proc.returncode is None:
            await proc.wait()

    def forget(self, rec) -> None:
        self._procs.pop(rec.id, None)

    async def collect(self, rec, dest: Path, cap: int) -> Collected:
        return await asyncio.get_running_loop().run_in_executor(
            None, self._collect, rec, dest, cap)

    def _collect(self, rec, dest: Path, cap: int) -> Collected:
        home = self.home(rec)
        uid = home_uid(home)
        (dest / "artifacts").mkdir(parents=True, exist_ok=True)
        result, artifacts, notebook = None, [], False
        try:
            home_fd = open_dir(home)
        except OSError:
            return Collected(None, [], False)
        try:
            report_fd = _open_subdir(home_fd, REPORT_DIR)
            if report_fd is not None:
                try:
                    raw = _read_own_file(report_fd, "result.json", uid, dest / "result.json",
                                         RESULT_MAX)
                    if raw == "ok":
                        try:
                            result = json.loads((dest / "result.json").read_text())
                        except ValueError:
                            result = None
                    notebook = _read_own_file(report_fd, "executed.ipynb", uid,
                                              dest / NOTEBOOK_FILE, cap) == "ok"
                finally:
                    os.close(report_fd)
            out_fd = _open_subdir(home_fd, OUTPUT_DIR)
            if out_fd is not None:
                try:
                    for name in sorted(os.listdir(out_fd))[:MAX_ARTIFACTS]:
                        if not safe_artifact_name(name):
                            continue
                        got = _read_own_file(out_fd, name, uid, dest / "artifacts" / name, cap)
                        if got == "ok":
                            artifacts.append({"name": name,
                                              "size": (dest / "artifacts" / name).stat().st_size})
                        elif got == "too_large":
                            artifacts.append({"name": name, "size": None, "skipped": "too_large"})
                finally:
                    os.close(out_fd)
        finally:
            os.close(home_fd)
        return Collected(result, artifacts, notebook)


def _open_subdir(parent_fd: int, name: str) -> int | None:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        return None  # missing, or not a plain directory (a symlink)


def _read_own_file(dir_fd: int, name: str, uid: int | None, dest: Path, cap: int) -> str:
    """Copy a regular file the session itself owns (no symlink followed, no
    hard link to someone else's file, no FIFO waited on): ``ok``,
    ``too_large`` or ``not_a_file``."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return "not_a_file"
    with os.fdopen(fd, "rb") as src:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (uid is not None and st.st_uid != uid):
            return "not_a_file"
        if st.st_size > cap:
            return "too_large"
        return "ok" if _copy_to(src, dest, cap) else "too_large"


class DockerRunner:
    """Docker spawner: papermill by ``docker exec`` in the session's
    container, results by the engine's archive API (which hands a symlink
    over as a symlink, never its target)."""

    def __init__(self):
        # docker-py's client is not thread-safe: one thread for all calls
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="report-docker")
        self._client = None

    def _api(self):
        import docker

        if self._client is None:
            self._client = docker.APIClient(version="auto", timeout=120)
        return self._client

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _container(self, rec) -> dict | None:
        found = self._api().containers(filters={
            "label": [f"{LABEL_HUB_USER}={rec.hub_user}", f"{LABEL_SERVER}={rec.server_name}"],
            "status": "running",
        })
        return found[0] if found else None

    def _home(self, container_id: str) -> str:
        env = self._api().inspect_container(container_id)["Config"].get("Env") or []
        return next((e.split("=", 1)[1] for e in env if e.startswith("HOME=")), "/home/jovyan")

    async def start(self, rec, config: dict) -> str:
        return await self._call(self._start, rec, config)

    def _start(self, rec, config: dict) -> str:
        container = self._container(rec)
        if container is None:
            raise RuntimeError("the run's container is not running")
        api = self._api()
        exec_id = api.exec_create(container["Id"], ["python3", "-c", SCRIPT, json.dumps(config)],
                                  workdir=self._home(container["Id"]), stdout=False,
                                  stderr=False)["Id"]
        api.exec_start(exec_id, detach=True)
        return f"{container['Id']} {exec_id}"

    async def finished(self, rec) -> bool:
        return await self._call(self._finished, rec)

    def _finished(self, rec) -> bool:
        import docker

        try:
            _, exec_id = rec.exec_handle.split(" ", 1)
            return not self._api().exec_inspect(exec_id)["Running"]
        except (ValueError, docker.errors.NotFound):
            return True
        except docker.errors.APIError as e:
            return e.status_code in (404, 409)

    async def kill(self, rec) -> None:
        """The container goes with the server (the spawner removes it)."""

    def forget(self, rec) -> None:
        pass

    async def collect(self, rec, dest: Path, cap: int) -> Collected:
        return await self._call(self._collect, rec, dest, cap)

    def _collect(self, rec, dest: Path, cap: int) -> Collected:
        (dest / "artifacts").mkdir(parents=True, exist_ok=True)
        try:
            container_id = rec.exec_handle.split(" ", 1)[0]
            home = self._home(container_id)
        except Exception:
            return Collected(None, [], False)
        result = None
        if self._fetch(container_id, f"{home}/{REPORT_DIR}/result.json", dest / "result.json",
                       RESULT_MAX) == "ok":
            try:
                result = json.loads((dest / "result.json").read_text())
            except ValueError:
                result = None
        notebook = self._fetch(container_id, f"{home}/{REPORT_DIR}/executed.ipynb",
                               dest / NOTEBOOK_FILE, cap) == "ok"
        artifacts = []
        listed = (result or {}).get("artifacts") if isinstance(result, dict) else None
        for item in (listed if isinstance(listed, list) else [])[:MAX_ARTIFACTS]:
            name = item.get("name") if isinstance(item, dict) else None
            if not safe_artifact_name(name):
                continue
            got = self._fetch(container_id, f"{home}/{OUTPUT_DIR}/{name}",
                              dest / "artifacts" / name, cap)
            if got == "ok":
                artifacts.append({"name": name, "size": (dest / "artifacts" / name).stat().st_size})
            elif got == "too_large":
                artifacts.append({"name": name, "size": None, "skipped": "too_large"})
        return Collected(result, artifacts, notebook)

    def _fetch(self, container_id: str, path: str, dest: Path, cap: int) -> str:
        """One regular file out of the container: ``ok``, ``too_large`` or
        ``not_a_file``."""
        import docker

        try:
            stream, info = self._api().get_archive(container_id, path, chunk_size=1 << 20)
        except docker.errors.APIError:
            return "not_a_file"
        if info.get("linkTarget") or int(info.get("size") or 0) > cap:
            return "too_large" if not info.get("linkTarget") else "not_a_file"
        # the tar holds one member: its header and padding come on top
        with tempfile.TemporaryFile() as tmp:
            if not _copy_capped(io.BufferedReader(_Chunks(stream)), tmp, cap + 64 * 1024):
                return "too_large"
            tmp.seek(0)
            try:
                with tarfile.open(fileobj=tmp, mode="r:") as tar:
                    member = tar.next()
                    if member is None or not member.isreg():
                        return "not_a_file"
                    if member.size > cap:
                        return "too_large"
                    with tar.extractfile(member) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
            except tarfile.TarError:
                return "not_a_file"
        return "ok"


class _Chunks(io.RawIOBase):
    """A generator of byte chunks as a readable raw stream."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buf), len(self._left))
        buf[:n] = self._left[:n]
        self._left = self._left[n:]
        return n
