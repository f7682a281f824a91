"""Download my work: a zip of a live session's home, streamed as it is made.

Everything the visitor made is in it except ``data/`` (the dataset's own
files), ``.cache/`` and ``.local/`` (installed packages and caches);
``work/`` (the workspace, when there is one) is included.

The session owns its home and may plant anything in it: symlinks to the
host's or another session's files, FIFOs, hard links. So the bridge (root)
walks it from a descriptor of the home, opens every directory and file with
``O_NOFOLLOW`` relative to its parent's descriptor (a symlink is skipped,
never followed), reads only regular files (opened non-blocking, checked with
``fstat`` on the descriptor it then reads) and only files owned by the
home's owner: a hard link to a file of root's that the session could make
(with ``fs.protected_hardlinks`` off) is not the session's and is left out.
Each file is read up to the size it had when opened.

Where the home is: ``session_files.home_of`` (local: the home directory;
docker: the loop-mounted home image). A container spawner without home
images keeps the home inside the container: the zip is then made from the
engine's archive of the container's home (``docker cp``), whose symlinks are
entries, never followed.

Blocking; ``stream_zip`` runs the work on a thread and hands the bytes to
the event loop.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat
import tarfile
import time
import zipfile
from pathlib import Path
from typing import AsyncIterator, Callable

#: top-level entries of the home that are not the visitor's work
EXCLUDED_TOP = frozenset({"data", ".cache", ".local"})
#: deeper directories are left out (each level holds a descriptor open)
MAX_DEPTH = 64
#: bytes per read, and per chunk handed to the client
CHUNK = 1024 * 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Cancelled(Exception):
    """The client went away: stop reading the home."""


def _zip_info(arcname: str, mtime: float, size: int) -> zipfile.ZipInfo:
    stamp = time.gmtime(max(mtime, 315532800))[:6]  # zip cannot say before 1980
    info = zipfile.ZipInfo(arcname, stamp)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = size
    info.external_attr = 0o644 << 16
    return info


def _copy(src_fd: int, out, size: int) -> None:
    left = size
    while left > 0:
        chunk = os.read(src_fd, min(CHUNK, left))
        if not chunk:
            break  # shrank while read
        out.write(chunk)
        left -= len(chunk)


def _open_dir(parent_fd: int, name: str, owner: int) -> tuple[int, list[str]] | None:
    """A descriptor of the subdirectory ``name`` and its sorted entries, or
    None when it is no longer a directory of ``owner``'s or cannot be listed."""
    try:
        sub = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        return None  # replaced by a symlink since: not followed
    if os.fstat(sub).st_uid != owner:
        os.close(sub)
        return None
    try:
        entries = sorted(os.listdir(sub))
    except OSError:
        os.close(sub)
        return None
    return sub, entries


def _add_file(zf: zipfile.ZipFile, parent_fd: int, name: str, arc: str, owner: int) -> int:
    """Add the file ``name`` as ``arc`` if it is still a regular file of
    ``owner``'s when opened; returns 1 if added, else 0."""
    try:
        file_fd = os.open(name, _FILE_FLAGS, dir_fd=parent_fd)
    except OSError:
        return 0  # a symlink now, or unreadable
    try:
        fst = os.fstat(file_fd)
        if not stat.S_ISREG(fst.st_mode) or fst.st_uid != owner:
            return 0
        os.set_blocking(file_fd, True)
        info = _zip_info(arc, fst.st_mtime, fst.st_size)
        with zf.open(info, "w", force_zip64=True) as out:
            _copy(file_fd, out, fst.st_size)
        return 1
    finally:
        os.close(file_fd)


def zip_tree(zf: zipfile.ZipFile, root: Path, prefix: str = "",
             exclude_top: frozenset = EXCLUDED_TOP) -> int:
    """Add the regular files under ``root`` owned by ``root``'s owner to
    ``zf`` under ``prefix``; returns how many. Symlinks, special files,
    other owners' files and directories deeper than ``MAX_DEPTH`` are left
    out."""
    try:
        top = os.open(root, _DIR_FLAGS)
    except OSError:
        return 0
    owner = os.fstat(top).st_uid
    added = 0
    # each frame: (descriptor, path in the zip, names left to visit)
    stack = [(top, prefix, sorted(os.listdir(top)))]
    try:
        while stack:
            fd, rel, names = stack[-1]
            if not names:
                os.close(fd)
                stack.pop()
                continue
            name = names.pop(0)
            if fd == top and name in exclude_top:
                continue
            arc = posixpath.join(rel, name) if rel else name
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile
            if st.st_uid != owner:
                continue
            if stat.S_ISDIR(st.st_mode):
                if len(stack) > MAX_DEPTH:
                    continue
                opened = _open_dir(fd, name, owner)
                if opened is None:
                    continue
                zf.writestr(zipfile.ZipInfo(arc + "/", time.gmtime(max(st.st_mtime, 315532800))[:6]),
                            b"")
                stack.append((opened[0], arc, opened[1]))
            elif stat.S_ISREG(st.st_mode):
                added += _add_file(zf, fd, name, arc, owner)
    finally:
        for fd, _rel, _names in stack:
            os.close(fd)
    return added


def _safe_member_name(name: str) -> str | None:
    """A tar member's path relative to the archived folder, or None when it
    would leave it."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if len(parts) < 2 or ".." in parts:
        return None
    return "/".join(parts[1:])  # the archive's first component is the folder itself


def zip_tar_stream(zf: zipfile.ZipFile, tar_chunks, exclude_top: frozenset = EXCLUDED_TOP) -> int:
    """Add the regular files of a tar stream (the engine's archive of the
    container's home) to ``zf``; links and special files are left out."""

    class _Reader:
        def __init__(self, chunks):
            self.chunks = iter(chunks)
            self.buf = b""

        def read(self, n=-1):
            while n < 0 or len(self.buf) < n:
                try:
                    self.buf += next(self.chunks)
                except StopIteration:
                    break
            if n < 0:
                out, self.buf = self.buf, b""
            else:
                out, self.buf = self.buf[:n], self.buf[n:]
            return out

    added = 0
    with tarfile.open(fileobj=_Reader(tar_chunks), mode="r|") as tar:
        for member in tar:
            rel = _safe_member_name(member.name)
            if rel is None or rel.split("/")[0] in exclude_top or not member.isfile():
                continue
            src = tar.extractfile(member)
            if src is None:
                continue
            with zf.open(_zip_info(rel, member.mtime, member.size), "w", force_zip64=True) as out:
                while True:
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
            added += 1
    return added


class _Sink:
    """A write-only, unseekable file for ZipFile whose bytes go to the event
    loop's queue; a full queue makes the zipping thread wait (the client sets
    the pace)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, cancelled):
        self.loop = loop
        self.queue = queue
        self.cancelled = cancelled
        self.buf = bytearray()

    def write(self, data) -> int:
        if self.cancelled.is_set():
            raise Cancelled()
        self.buf += data
        if len(self.buf) >= CHUNK:
            self._send()
        return len(data)

    def _send(self) -> None:
        if self.buf:
            chunk, self.buf = bytes(self.buf), bytearray()
            asyncio.run_coroutine_threadsafe(self.queue.put(chunk), self.loop).result()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._send()


async def stream_zip(fill: Callable[[zipfile.ZipFile], None]) -> AsyncIterator[bytes]:
    """Chunks of a zip that ``fill(zipfile)`` writes on a worker thread.
    Stopping the iteration early (the client went away) stops the thread at
    its next write."""
    import threading

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=4)
    cancelled = threading.Event()
    done = object()

    def work():
        sink = _Sink(loop, queue, cancelled)
        try:
            with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
                fill(zf)
            sink.close()
            result = done
        except Cancelled:
            return
        except BaseException as e:  # handed to the loop, raised there
            result = e
        if not cancelled.is_set():
            asyncio.run_coroutine_threadsafe(queue.put(result), loop).result()

    worker = loop.run_in_executor(None, work)
    try:
        while True:
            item = await queue.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        while not queue.empty():  # let a waiting put finish
            queue.get_nowait()
        try:
            await asyncio.wait_for(asyncio.shield(worker), 5)
        except Exception:
            pass


def container_home_archive(hub_user: str, server_name: str, home: str = "/home/jovyan"):
    """The engine's tar stream of a session container's home (on this
    engine), as chunks; None when no running container of the session is
    here. Blocking."""
    import docker

    from .container_labels import LABEL_HUB_USER, LABEL_SERVER

    client = docker.APIClient(version="auto")
    found = client.containers(filters={
        "label": [f"{LABEL_HUB_USER}={hub_user}", f"{LABEL_SERVER}={server_name}"],
        "status": "running",
    })
    if not found:
        client.close()
        return None
    stream, _stat = client.get_archive(found[0]["Id"], home, chunk_size=CHUNK)

    def chunks():
        try:
            yield from stream
        finally:
            client.close()

    return chunks()
