"""One file of a live session's home, read by the bridge (root) without
following anything the session could have planted.

The session owns its home and may turn any entry into a symlink at any
moment, to a file of the host or of another session. So the path is walked
one component at a time from a descriptor of the home, every component opened
with ``O_NOFOLLOW`` (a symlink anywhere on the path is refused, not
followed), and the last one must be a regular file (never a FIFO or a
device: opened non-blocking, checked with ``fstat`` on the descriptor that is
then read).

Where the home is, seen from the bridge's host:
- local spawner: ``<storage root>/sessions/<id>/home``;
- docker with ``home_on_image``: the loop-mounted home image,
  ``<storage root>/session-homes/<id>`` (session_disk.py; from a hub in a
  container, as the engine's mount namespace shows it).
A container spawner without home images keeps the home inside the container:
``home_of`` says 501 ``not_supported`` and the bridge reads it through the
session's own server instead (session_server_files.py).

Blocking; callers run it on a worker thread.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import BridgeError
from .host_namespaces import host_path
from .session_disk import HOMES_DIR, KEY, mount_points
from .settings import Settings

#: the dataset's originals: not the visitor's work
EXCLUDED_TOP = ("data",)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def bad_path(message: str) -> BridgeError:
    return BridgeError(400, "bad_path", message)


def path_parts(path) -> list[str]:
    """The components of a path relative to the home; BridgeError 400
    ``bad_path`` for an absolute path, ``..``, a path under ``data/`` or
    nothing at all."""
    if not isinstance(path, str) or not path.strip():
        raise bad_path("Give the path of a file in the session's home.")
    if path.startswith("/") or "\x00" in path:
        raise bad_path("The path must be relative to the session's home.")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise bad_path("Give the path of a file in the session's home.")
    if ".." in parts:
        raise bad_path("The path must stay inside the session's home.")
    if parts[0] in EXCLUDED_TOP:
        raise bad_path("Files under data/ are the dataset's own; save a copy from elsewhere.")
    return parts


def home_of(settings: Settings, session_id: str) -> Path:
    """The directory holding this session's home on the bridge's host."""
    if settings.spawner == "local":
        return settings.storage_root / "sessions" / session_id / "home"
    if not KEY.match(session_id or ""):
        raise BridgeError(404, "file_not_found", "The session has no home.")
    home = settings.storage_root.resolve() / HOMES_DIR / session_id
    if str(home) not in mount_points():
        raise BridgeError(501, "not_supported",
                          "This portal keeps session homes inside their containers, where "
                          "the bridge cannot read them.")
    # a hub in a container mounted it in the engine's mount namespace, which
    # it reads through /proc/<pid>/root (host_namespaces.py)
    return Path(host_path(str(home)))


def open_regular(home: Path, parts: list[str]) -> tuple[int, int]:
    """(descriptor, size) of the regular file at ``parts`` under ``home``;
    the caller closes the descriptor."""
    try:
        fd = os.open(home, _DIR_FLAGS)
    except FileNotFoundError:
        raise BridgeError(404, "file_not_found", "The session has no home.") from None
    try:
        for name in parts[:-1]:
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                raise BridgeError(404, "file_not_found", "No such file in the session.") from None
            except (NotADirectoryError, OSError):
                # ELOOP (a symlink) or ENOTDIR: not a directory of the home
                raise bad_path(f"{name} is not a folder of the session's home.") from None
            os.close(fd)
            fd = nxt
        try:
            file_fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            raise BridgeError(404, "file_not_found", "No such file in the session.") from None
        except OSError:
            raise bad_path("Only regular files can be saved (not links or special files).") from None
    finally:
        os.close(fd)
    st = os.fstat(file_fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(file_fd)
        raise bad_path("Only regular files can be saved (not folders, links or special files).")
    os.set_blocking(file_fd, True)
    return file_fd, st.st_size


def open_file(settings: Settings, session_id: str, path: str,
              max_bytes: int | None = None) -> tuple[int, int]:
    """Open one file of a session's home for reading: (descriptor, size).
    413 ``too_large`` when it is bigger than ``max_bytes``."""
    parts = path_parts(path)
    fd, size = open_regular(home_of(settings, session_id), parts)
    if max_bytes is not None and size > max_bytes:
        os.close(fd)
        raise BridgeError(413, "too_large",
                          f"The file is {size} bytes; at most {max_bytes} bytes can be saved.",
                          size=size, max_bytes=max_bytes)
    return fd, size


def read_file(settings: Settings, session_id: str, path: str,
              max_bytes: int | None = None) -> bytes:
    """The whole file (for small files and tests); see ``open_file``."""
    fd, size = open_file(settings, session_id, path, max_bytes)
    with os.fdopen(fd, "rb") as f:
        return f.read(size)
