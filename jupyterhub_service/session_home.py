"""A local session's home: a uid of its own, and writes by root into it that
never follow anything the session could have planted there.

Each local session (and pool slot) runs as a numeric uid of its own from
``SESSION_UIDS``, with a group of the same number and no passwd entry. The
uid is chosen when the bridge creates the home, and recorded as the home's
owner: the spawner reads it from there. So one session cannot open another's
home (mode 0700) nor its processes' ``/proc/<pid>/cwd``.

The session owns its home, so it may rename, replace or symlink any entry in
it at any time. Root therefore writes into a home only through a descriptor
of the home opened with ``O_NOFOLLOW``, creates files with ``O_EXCL`` after
removing whatever had the name, and fills ``~/data`` only through a
descriptor of a directory it has just checked it owns itself.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat
import threading
from pathlib import Path

# Far above any distribution's system and login users and above the usual
# /etc/subuid ranges, below 2**31 (some tools treat uids as signed).
SESSION_UIDS = range(2_000_000_000, 2_001_000_000)

_allocating = threading.Lock()
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeHome(OSError):
    """A path the bridge was to write was not what it created."""


def is_session_uid(uid: int) -> bool:
    return uid in SESSION_UIDS


def home_uid(home: Path) -> int | None:
    """The session uid owning ``home``, or None (no home, or not a session's)."""
    try:
        st = os.lstat(home)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode) or not is_session_uid(st.st_uid):
        return None
    return st.st_uid


def give_home_a_uid(home: Path, sessions_root: Path) -> int:
    """Chown a home root has just created to a session uid no live home or
    process holds, and return it; a home that has one keeps it (a pool slot
    being claimed)."""
    with _allocating:  # homes are prepared on worker threads
        uid = home_uid(home)
        if uid is not None:
            return uid
        taken = _uids_in_use(sessions_root)
        while True:
            uid = SESSION_UIDS.start + secrets.randbelow(len(SESSION_UIDS))
            if uid not in taken:
                break
        os.chown(home, uid, uid, follow_symlinks=False)
        return uid


def _uids_in_use(sessions_root: Path) -> set[int]:
    taken = set()
    for home in Path(sessions_root).glob("*/home"):
        try:
            taken.add(os.lstat(home).st_uid)
        except OSError:
            pass
    for pid in _pids():
        try:
            taken.add(os.stat(f"/proc/{pid}").st_uid)
        except OSError:
            pass
    return taken


def _pids() -> list[str]:
    try:
        return [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []


def kill_processes_of(uid: int) -> int:
    """SIGKILL every process running as a session uid (what a session left
    behind, e.g. a daemon started from its terminal), so nothing of it
    outlives the session or meets the uid's next holder. Returns how many."""
    if not is_session_uid(uid):
        return 0
    killed = 0
    for _attempt in range(5):  # a process may fork while we look
        found = 0
        for pid in _pids():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    os.kill(int(pid), signal.SIGKILL)
                    found += 1
            except (OSError, ValueError):
                pass
        killed += found
        if not found:
            break
    return killed


# -- writing into a session's home ---------------------------------------


def open_dir(path: Path) -> int:
    """A descriptor of ``path``, refusing a symlink at its last component."""
    try:
        return os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise UnsafeHome(f"{path} is not a plain directory: {exc}") from None


def _remove_entry(dir_fd: int, name: str) -> None:
    """Remove whatever ``name`` is in the directory, never following it."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        # rmtree with dir_fd works on descriptors and does not follow symlinks
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def write_file(home: Path, name: str, *, data: bytes | None = None, source: Path | None = None,
               owner: int | None = None, mode: int = 0o644) -> None:
    """Create ``home/name`` afresh with ``data`` or a copy of ``source``,
    replacing (never following) whatever the session left under that name."""
    if "/" in name or name in ("", ".", ".."):
        raise UnsafeHome(f"not a plain file name: {name!r}")
    home_fd = open_dir(home)
    try:
        _remove_entry(home_fd, name)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=home_fd)
        with os.fdopen(fd, "wb") as out:
            if source is not None:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            else:
                out.write(data or b"")
            if owner is not None:
                os.fchown(out.fileno(), owner, owner)
            os.fchmod(out.fileno(), mode)
    finally:
        os.close(home_fd)


def fresh_own_dir(parent: Path, name: str) -> int:
    """A descriptor of ``parent/name`` as a directory root owns, mode 0755.

    A directory root already owns there is kept (refilled); anything else
    under the name (a symlink, a file, a directory the session made) is
    removed without being followed, and a new directory is made.
    """
    parent_fd = open_dir(parent)
    try:
        for attempt in range(4):  # the session may race us for the name
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            except OSError:
                fd = None
            if fd is not None:
                if os.fstat(fd).st_uid == os.geteuid():
                    os.fchmod(fd, 0o755)
                    return fd
                os.close(fd)
            if attempt == 3:
                break
            _remove_entry(parent_fd, name)
            try:
                os.mkdir(name, 0o755, dir_fd=parent_fd)
            except FileExistsError:
                pass
        raise UnsafeHome(f"could not make {parent / name} a directory of its own")
    finally:
        os.close(parent_fd)
