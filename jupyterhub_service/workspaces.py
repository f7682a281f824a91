"""Workspaces that last: with ``persistent_workspaces`` on, a logged-in
user's ``~/work`` is kept from one session to the next, whatever dataset
the session is on. Guests never get one.

Storage is the session disk's mechanism (session_disk.py): an ext4 image
file of ``workspace_quota`` per user, ``<storage>/workspaces/<key>.ext4``,
loop-mounted on ``<storage>/workspaces/mnt/<key>`` (under a root-only 0700
directory) while a session holds it. Writing past the quota is ENOSPC inside
the session and nothing else. ``<key>`` is a hash of the CKAN user id: no
name on disk, the bridge's database maps keys to users.

- Local spawner: bind-mounted at ``<home>/work``; the workspace's files are
  given to the session's own uid at mount (each session has a new one), so
  no other session can read it (its home is 0700, the image's mount point is
  root's).
- Docker: bind-mounted at ``/home/jovyan/work`` of that user's session
  container only (``workspace_dir`` in user_options), owned by 1000:100.
- Without loop mounts (the hub in a container, swarm) a workspace is a plain
  directory ``<storage>/workspaces/dirs/<key>`` and the quota is not
  enforced; on swarm ``<storage>`` must be shared storage mounted at the same
  path on every node (docker/README.md).

One session at a time holds a workspace: a second session the same user
opens while the first runs gets no ``~/work`` but a note naming the session
that has it (two writers of one ext4 image would corrupt it, and two local
sessions have two uids). The holder and the last use are recorded; the
reaper removes workspaces unused for ``workspace_retention_days``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from .errors import BridgeError
from .session_disk import mount_points
from .session_home import fresh_own_dir, home_uid, kill_processes_of, write_file
from .settings import parse_bytes
from .store import LIVE, STOPPING, WorkspaceRecord, iso, utcnow

log = logging.getLogger("bridge.workspaces")

WORKSPACES_DIR = "workspaces"
#: where a workspace appears in a session's home
MOUNT_NAME = "work"
#: the note a session gets when another session of its user holds the workspace
IN_USE_NOTE = "WORKSPACE-IN-USE.txt"
#: the session user of the container spawners' image
CONTAINER_OWNER = (1000, 100)


class WorkspaceError(RuntimeError):
    """A workspace could not be created, mounted or removed."""


def workspace_key(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:40]


def loop_mounts_possible(settings) -> bool:
    """The bridge can loop-mount (root on the host, as the session disk
    needs): the local spawner, and docker with the hub on the host."""
    if os.geteuid() != 0 or settings.spawner == "swarm":
        return False
    return settings.spawner == "local" or not settings.hub_connect_host


# -- one workspace on disk (blocking; callers use an executor) ----------------


class WorkspaceDisk:
    def __init__(self, root: Path, key: str, on_image: bool):
        self.root = Path(root)
        self.key = key
        self.on_image = on_image
        self.image = self.root / f"{key}.ext4"
        self.path = self.root / ("mnt" if on_image else "dirs") / key

    def _dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.path.parent, 0o700)

    def exists(self) -> bool:
        return self.image.exists() if self.on_image else self.path.is_dir()

    def mounted(self) -> bool:
        return str(self.path) in mount_points()

    def open(self, quota: int, owner: tuple[int, int]) -> tuple[str, int]:
        """Create (or grow to ``quota``) and mount read-write, hand every
        file to ``owner``; returns (path, quota in force)."""
        self._dirs()
        if not self.on_image:
            self.path.mkdir(mode=0o700, exist_ok=True)
            _give_tree(self.path, owner)
            return str(self.path), 0
        if self.mounted() and not self.image.exists():
            unmount(self.path)  # a mount outliving its image (a crash, a wiped storage)
        if not self.mounted():
            if not self.image.exists():
                with open(self.image, "wb") as f:
                    f.truncate(quota)
                try:
                    _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                          f"root_owner={owner[0]}:{owner[1]}", str(self.image)])
                except WorkspaceError:
                    self.image.unlink()
                    raise
            elif self.image.stat().st_size < quota:
                # a quota raised since: grow (never shrink what a user has)
                _run(["e2fsck", "-f", "-y", str(self.image)], ok=(0, 1))
                with open(self.image, "r+b") as f:
                    f.truncate(quota)
                _run(["resize2fs", str(self.image)])
            self.path.mkdir(mode=0o700, exist_ok=True)
            _run(["mount", "-t", "ext4", "-o", "loop,nosuid,nodev,discard",
                  str(self.image), str(self.path)])
            lost = self.path / "lost+found"
            if lost.is_dir() and not lost.is_symlink() and not any(lost.iterdir()):
                lost.rmdir()
        _give_tree(self.path, owner)
        return str(self.path), self.image.stat().st_size

    def usage(self) -> int:
        """Bytes the workspace's files take (only while mounted, or in
        directory mode)."""
        total = 0
        for _dirpath, dirnames, filenames, dirfd in os.fwalk(self.path, follow_symlinks=False):
            for name in dirnames + filenames:
                try:
                    total += os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_blocks * 512
                except OSError:
                    pass
        return total

    def close(self) -> None:
        if self.on_image:
            unmount(self.path)

    def remove(self) -> None:
        if self.on_image:
            self.close()
            if self.path.is_dir() and not self.mounted():
                self.path.rmdir()
            self.image.unlink(missing_ok=True)
        elif self.path.is_dir():
            shutil.rmtree(self.path)

    def write_zip(self, dest) -> None:
        """A zip of the workspace's regular files under ``work/``; an
        unmounted image is mounted read-only for the time of it."""
        temporary = self.on_image and not self.mounted()
        if temporary:
            self._dirs()
            self.path.mkdir(mode=0o700, exist_ok=True)
            _run(["mount", "-t", "ext4", "-o", "loop,ro,nosuid,nodev,noexec",
                  str(self.image), str(self.path)])
        try:
            _zip_tree(self.path, dest, MOUNT_NAME)
        finally:
            if temporary:
                unmount(self.path)


def _give_tree(path: Path, owner: tuple[int, int]) -> None:
    """Every entry to ``owner``, never following a symlink; the root 0700."""
    root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        st = os.fstat(root)
        os.fchmod(root, 0o700)
        if (st.st_uid, st.st_gid) == owner:
            return  # given already (the container spawners' one owner)
        os.fchown(root, *owner)
    finally:
        os.close(root)
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(path, follow_symlinks=False):
        for name in dirnames + filenames:
            try:
                os.chown(name, *owner, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                pass


def _zip_tree(path: Path, dest, prefix: str) -> None:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo(prefix + "/"), b"")
        for dirpath, _dirnames, filenames, dirfd in os.fwalk(path, follow_symlinks=False):
            rel = os.path.relpath(dirpath, path)
            for name in sorted(filenames):
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
                except OSError:
                    continue  # a symlink, a socket, gone
                with os.fdopen(fd, "rb") as src:
                    st = os.fstat(src.fileno())
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    arc = os.path.normpath(os.path.join(prefix, rel, name))
                    info = zipfile.ZipInfo(arc, time.localtime(st.st_mtime)[:6])
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with zf.open(info, "w", force_zip64=True) as out:
                        shutil.copyfileobj(src, out, 1 << 20)


def unmount(path: Path, attempts: int = 5) -> None:
    """Unmount ``path`` if mounted; detached lazily when still busy."""
    for attempt in range(attempts):
        if str(path) not in mount_points():
            return
        if _run(["umount", str(path)], ok=None).returncode == 0:
            return
        time.sleep(0.2 * (attempt + 1))
    log.warning("%s still busy: detaching lazily", path)
    _run(["umount", "-l", str(path)], ok=None)


def unmount_all_under(path: Path) -> None:
    """Unmount whatever is mounted below ``path`` (deepest first), so that
    removing a session directory never walks into a workspace."""
    prefix = str(path).rstrip("/") + "/"
    for point in sorted((p for p in mount_points() if p.startswith(prefix)),
                        key=len, reverse=True):
        unmount(Path(point))


def _run(cmd: list[str], ok: tuple[int, ...] | None = (0,)):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WorkspaceError(f"{cmd[0]}: {e}") from None
    if ok is not None and out.returncode not in ok:
        raise WorkspaceError(f"{' '.join(cmd[:2])} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def _bind_into_home(source: str, home: Path) -> None:
    """Mount ``source`` on ``<home>/work``: a directory root makes afresh
    (whatever the session had under the name is removed, never followed),
    mounted on through its descriptor so that no path is resolved twice."""
    fd = fresh_own_dir(home, MOUNT_NAME)
    try:
        _run(["mount", "--bind", source, f"/proc/{os.getpid()}/fd/{fd}"])
    finally:
        os.close(fd)


# -- the bridge's side ---------------------------------------------------------


class Workspaces:
    """Workspaces of the bridge: attach at launch, detach at end, list,
    download, delete, expire. One lock per user orders these."""

    def __init__(self, settings, db, runtime):
        self.settings = settings
        self.db = db
        self.runtime = runtime
        self.root = settings.storage_root / WORKSPACES_DIR
        self.local = settings.spawner == "local"
        self.on_image = loop_mounts_possible(settings)
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, user_id: str) -> asyncio.Lock:
        return self._locks.setdefault(user_id, asyncio.Lock())

    def disk(self, rec: WorkspaceRecord) -> WorkspaceDisk:
        return WorkspaceDisk(self.root, rec.key, self.on_image)

    async def _in_executor(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # -- sessions -------------------------------------------------------------

    async def attach(self, session, home: Path) -> str | None:
        """Give a starting session its user's workspace. Returns the host
        path to mount at ~/work (container spawners; the local spawner's is
        mounted here already), or None (off, a guest, held elsewhere)."""
        rt = self.runtime.current()
        if session.user_kind != "user" or not rt["persistent_workspaces"]:
            return None
        async with self._lock(session.user_id):
            ws = await self.db.workspace(session.user_id)
            if ws is not None and ws.holder and ws.holder != session.id:
                holder = await self.db.get(ws.holder)
                if holder is not None and holder.status in LIVE + (STOPPING,):
                    await self._in_executor(self._write_note, home, holder)
                    return None
                await self._close(ws)  # a holder that ended without letting go
            if ws is None:
                ws = await self.db.workspace_add(WorkspaceRecord(
                    user_id=session.user_id, key=workspace_key(session.user_id),
                    created_at=utcnow(), last_used=utcnow(), size=0, quota=0))
            owner = (home_uid(home),) * 2 if self.local else CONTAINER_OWNER
            if owner[0] is None:
                raise WorkspaceError(f"{home} has no session uid")
            quota = parse_bytes(rt["workspace_quota"])
            path, quota = await self._in_executor(self.disk(ws).open, quota, owner)
            if self.local:
                await self._in_executor(_bind_into_home, path, home)
            await self.db.workspace_update(session.user_id, holder=session.id,
                                           last_used=utcnow(), quota=quota)
            log.info("workspace of %s attached to session %s", session.user_id, session.id)
            return None if self.local else path

    def _write_note(self, home: Path, holder) -> None:
        text = (
            "Your workspace (~/work) is open in your other session, on the dataset "
            f"\"{holder.dataset_title or holder.dataset_name}\".\n"
            "A workspace is open in one session at a time. Files of this session are "
            "discarded when it ends:\nsave what you want to keep from the other session, "
            "or end it and open this one again.\n"
        )
        write_file(home, IN_USE_NOTE, data=text.encode(), owner=home_uid(home) if self.local else None)

    async def detach(self, session, home: Path | None) -> None:
        """The session's server is stopped: unmount the workspace it held
        and record the use. Before its home is removed."""
        if session.user_kind != "user":
            return
        async with self._lock(session.user_id):
            ws = await self.db.workspace(session.user_id)
            if ws is None or ws.holder != session.id:
                return
            if self.local and home is not None:
                await self._in_executor(self._unbind_local, home)
            await self._close(ws)

    def _unbind_local(self, home: Path) -> None:
        uid = home_uid(home)
        if uid is not None:
            kill_processes_of(uid)  # nothing of the session keeps the mount busy
        unmount(home / MOUNT_NAME)

    async def _close(self, ws: WorkspaceRecord) -> None:
        disk = self.disk(ws)

        def measure_and_close():
            size = disk.usage() if (disk.mounted() or not self.on_image) else None
            disk.close()
            return size

        size = await self._in_executor(measure_and_close)
        values = {"holder": None, "last_used": utcnow()}
        if size is not None:
            values["size"] = size
        await self.db.workspace_update(ws.user_id, **values)

    # -- the API ----------------------------------------------------------------

    async def list(self, user_id: str | None = None) -> list[dict]:
        out = []
        for ws in await self.db.workspaces(user_id=user_id):
            size = ws.size
            if ws.holder:
                disk = self.disk(ws)
                if disk.mounted() or not self.on_image:
                    size = await self._in_executor(disk.usage)
            out.append(self.describe(ws, size))
        return out

    def describe(self, ws: WorkspaceRecord, size: int | None = None) -> dict:
        return {
            "user_id": ws.user_id,
            "size": ws.size if size is None else size,
            "quota": ws.quota or None,
            "created_at": iso(ws.created_at),
            "last_used": iso(ws.last_used),
            "in_use": bool(ws.holder),
        }

    async def delete(self, user_id: str) -> None:
        async with self._lock(user_id):
            ws = await self.db.workspace(user_id)
            if ws is None:
                raise BridgeError(404, "not_found", "This user has no workspace.")
            if await self._user_is_live(user_id):
                raise BridgeError(409, "session_live",
                                  "The workspace is in use: end the user's sessions first.")
            if ws.holder:
                await self._close(ws)
            await self._in_executor(self.disk(ws).remove)
            await self.db.workspace_remove(user_id)
            log.info("workspace of %s deleted", user_id)

    async def _user_is_live(self, user_id: str) -> bool:
        return bool(await self.db.sessions(user_id=user_id, statuses=LIVE + (STOPPING,)))

    async def zip(self, user_id: str) -> str:
        """A temporary zip of the workspace (the caller deletes it)."""
        async with self._lock(user_id):
            ws = await self.db.workspace(user_id)
            if ws is None:
                raise BridgeError(404, "not_found", "This user has no workspace.")
            disk = self.disk(ws)
            if not await self._in_executor(disk.exists):
                raise BridgeError(404, "not_found", "This user has no workspace.")
            tmp_dir = self.root / "tmp"

            def build() -> str:
                tmp_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
                fd, name = tempfile.mkstemp(suffix=".zip", dir=tmp_dir)
                try:
                    with os.fdopen(fd, "wb") as f:
                        disk.write_zip(f)
                except BaseException:
                    os.unlink(name)
                    raise
                return name

            return await self._in_executor(build)

    # -- the reaper ---------------------------------------------------------------

    async def reap(self, now: dt.datetime) -> int:
        """Let go of workspaces whose holder is over (a teardown that did not
        get to it), and remove those unused for ``workspace_retention_days``.
        Returns how many were removed."""
        days = self.runtime.current()["workspace_retention_days"]
        for ws in await self.db.workspaces(held=True):
            holder = await self.db.get(ws.holder)
            if holder is None or holder.status not in LIVE + (STOPPING,):
                async with self._lock(ws.user_id):
                    current = await self.db.workspace(ws.user_id)
                    if current is not None and current.holder == ws.holder:
                        log.info("workspace of %s: holder %s is over", ws.user_id, ws.holder)
                        try:
                            await self._close(current)
                        except WorkspaceError as e:
                            log.warning("workspace of %s: %s", ws.user_id, e)
        removed = 0
        for ws in await self.db.workspaces(unused_since=now - dt.timedelta(days=days)):
            async with self._lock(ws.user_id):
                current = await self.db.workspace(ws.user_id)
                if current is None or current.holder or await self._user_is_live(ws.user_id):
                    continue
                try:
                    await self._in_executor(self.disk(current).remove)
                except (WorkspaceError, OSError) as e:
                    log.warning("workspace of %s not removed: %s", ws.user_id, e)
                    continue
                await self.db.workspace_remove(ws.user_id)
                removed += 1
                log.info("workspace of %s removed: unused for %d days", ws.user_id, days)
        return removed
