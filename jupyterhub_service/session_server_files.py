"""Files of a session's home read through the session's own Jupyter server,
for container spawners whose homes the bridge cannot read from its host.

Where the bridge cannot open the home (``session_files.home_of`` says
``not_supported``: the docker spawner without home images, and swarm, whose
task may run on any node), it asks the session's server, through the hub's
proxy on the bridge's own host or container (the hub's bind URL):
``{proxy}{base}user/{name}/{server}/api/contents/{dir}`` lists a folder
(name, type, size, last change) and ``.../files/{path}`` gives a file's
bytes (Jupyter Server's raw file handler).

The token. Session code is hostile: it can replace the process listening on
its server's port or read its memory, so whatever is sent there is the
session's. The bridge's own hub token is therefore never sent. For each read
the bridge mints (``POST /hub/api/users/{name}/tokens``) a short-lived token
owned by the session's hub user whose only scope is
``access:servers!server={name}/{server}``: it reaches that one server, which
the session's own token already reaches, so a leak gives the session
nothing. It is deleted when the read ends, also on failure; a bridge killed
midway leaves it to expire (the read's deadline plus a minute). This needs
the ``tokens`` scope in the bridge's role (jupyterhub_config.py); JupyterHub
(5.x and 6.x) checks the requested scopes against those of the token's owner,
whose ``user`` role holds ``access:servers!user``.

Everything the server answers is bounded: a request timeout, a deadline for
the whole read, at most ``MAX_LISTING_BYTES`` of JSON per folder, a file at
most its listed size (the zip) or ``max_bytes`` (Save: 413 ``too_large``,
decided before the first byte reaches CKAN, since the file is spooled to a
temporary file first), the zip at most the bytes the session may hold
(``disk_limit`` plus ``workspace_quota``), ``MAX_ENTRIES`` files and folders
and ``session_zip.MAX_DEPTH`` levels. Names are checked (no ``/``, ``\\``,
``..``) so the zip never names a path outside its folder. No redirect is
followed and no environment proxy used (``http.client``). A zip that hits a
bound, or whose server stops answering after the first folder, ends cleanly
with ``DOWNLOAD-INCOMPLETE.txt`` saying what is missing.

What the server shows is what the zip holds: ``data/``, ``.cache/`` and
``.local/`` are left out as everywhere, and so are hidden files and folders
(Jupyter Server does not serve names starting with a dot) and its
``hide_globs`` (``__pycache__``, ``.ipynb_checkpoints``, ...). Symlinks are
whatever the session's server makes of them: read as the session's own user
inside its container, they give nothing the session could not copy.

Who uses it: Save's read (``bridge.SessionFileHandler``) whenever
``home_of`` says ``not_supported``; Download (``user_routes``) on swarm
always (the container may be on another node, and one path for all swarm
sessions is the one the tests run). The docker spawner without home images
keeps ``docker cp`` for Download: the engine is the spawner's own, so the
container is always there, and the engine's archive includes hidden files.

The HTTP calls to the server are blocking and run on worker threads; minting
and deleting the token are the hub's async API.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import logging
import posixpath
import tempfile
import time
import zipfile
from contextlib import asynccontextmanager
from typing import IO, AsyncIterator
from urllib.parse import quote, urlencode, urlsplit

from . import session_zip
from .errors import BridgeError, hub_unavailable
from .hub_api import HubAPI, HubError, HubUnavailable
from .session_files import bad_path, path_parts
from .settings import Settings, parse_bytes
from .store import SessionRecord

log = logging.getLogger("bridge.session_server_files")

#: what the hub shows as the minted token's note
TOKEN_NOTE = "bridge: read session files"
#: a token outlives its read's deadline by this much, then expires on its own
TOKEN_GRACE = 60
#: seconds for reading one file (Save), and for a whole zip (Download)
FILE_DEADLINE = 300
ZIP_DEADLINE = 3600
#: seconds to connect, and between two bytes of an answer
REQUEST_TIMEOUT = 30
#: one folder's listing (JSON); a real one is a few hundred bytes per entry
MAX_LISTING_BYTES = 8 * 1024**2
#: files and folders in one zip
MAX_ENTRIES = 20000
#: bytes per read from the server
CHUNK = 256 * 1024
#: the note a zip ends with when something was left out
INCOMPLETE = "DOWNLOAD-INCOMPLETE.txt"


def server_unavailable(message: str = "The session's server is not answering.") -> BridgeError:
    return BridgeError(503, "session_unavailable", message)


def server_url(settings: Settings, rec: SessionRecord) -> str:
    """The session server's base URL at the hub's proxy, as the bridge (on
    the hub's host or in its container) reaches it: the hub's bind URL, a
    wildcard address replaced by loopback."""
    bind = urlsplit((settings.hub_bind_url or settings.hub_url).rstrip("/"))
    host = bind.hostname or "127.0.0.1"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    netloc = f"[{host}]" if ":" in host else host
    if bind.port:
        netloc += f":{bind.port}"
    base = bind.path.rstrip("/") + settings.hub_base_url.rstrip("/") + "/"
    return (f"{bind.scheme or 'http'}://{netloc}{base}user/"
            f"{quote(rec.hub_user, safe='')}/{quote(rec.server_name, safe='')}/")


def home_budget(rec: SessionRecord, runtime: dict) -> int:
    """Bytes a session can hold: its disk limit and a workspace. More than
    that from its server is not the visitor's work."""
    disk = (rec.limits or {}).get("disk_limit") or runtime["disk_limit"]
    return parse_bytes(disk) + parse_bytes(runtime["workspace_quota"])


class SessionServer:
    """One session's Jupyter server at the proxy, with a token for it alone.
    Blocking; used on worker threads. Every failure is a BridgeError."""

    def __init__(self, base_url: str, token: str, seconds: float):
        self.base = urlsplit(base_url)
        self.token = token
        self.deadline = time.monotonic() + seconds

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise server_unavailable("The session's server took too long to answer.")

    def open(self, path: str, query: dict | None = None):
        """(connection, response) of a GET of ``path`` under the server's
        URL, status 200; the caller closes the connection. 404
        ``file_not_found`` for a 404, 503 ``session_unavailable`` otherwise."""
        self._check_deadline()
        cls = http.client.HTTPSConnection if self.base.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.base.hostname, self.base.port, timeout=REQUEST_TIMEOUT)
        target = self.base.path + quote(path) + (f"?{urlencode(query)}" if query else "")
        try:
            conn.request("GET", target, headers={"Authorization": f"token {self.token}",
                                                 "Accept-Encoding": "identity"})
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException):
            conn.close()
            raise server_unavailable() from None
        if resp.status == 200:
            return conn, resp
        conn.close()
        if resp.status == 404:
            raise BridgeError(404, "file_not_found", "No such file in the session.")
        raise server_unavailable(f"The session's server answered {resp.status}.")

    def read(self, resp, n: int) -> bytes:
        """Up to ``n`` bytes, as soon as some arrive: a server that sends a
        byte at a time is stopped by the deadline, not a byte count."""
        self._check_deadline()
        try:
            return resp.read1(n)
        except (OSError, http.client.HTTPException):
            raise server_unavailable("The session's server stopped answering.") from None

    def model(self, path: str, content: bool) -> dict:
        """The contents API's model of ``path`` ('' is the home)."""
        conn, resp = self.open("api/contents/" + path, {"content": int(content)})
        try:
            body = bytearray()
            while chunk := self.read(resp, CHUNK):
                body += chunk
                if len(body) > MAX_LISTING_BYTES:
                    raise server_unavailable("The session's server sent too long a listing.")
        finally:
            conn.close()
        try:
            model = json.loads(body)
        except ValueError:
            model = None
        if not isinstance(model, dict):
            raise server_unavailable("The session's server sent an unreadable listing.")
        return model

    def copy(self, opened, out, limit: int, over_limit: BridgeError | None = None) -> int:
        """Write the body of ``opened`` (``open``'s answer, closed here) to
        ``out``, at most ``limit`` bytes; with ``over_limit``, a longer body
        raises it instead of being cut at ``limit``. Returns the bytes
        written."""
        conn, resp = opened
        written = 0
        try:
            while True:
                chunk = self.read(resp, min(CHUNK, limit + 1 - written))
                if not chunk:
                    return written
                if written + len(chunk) > limit:
                    if over_limit is not None:
                        raise over_limit
                    out.write(chunk[: limit - written])
                    return limit
                out.write(chunk)
                written += len(chunk)
        finally:
            conn.close()


@asynccontextmanager
async def server_access(hub: HubAPI, settings: Settings, rec: SessionRecord,
                        seconds: float) -> AsyncIterator[SessionServer]:
    """The session's server, reachable for ``seconds`` with a token minted
    for it alone; the token is deleted on the way out, whatever happened."""
    scopes = [f"access:servers!server={rec.hub_user}/{rec.server_name}"]
    try:
        token = await hub.new_token(rec.hub_user, scopes, int(seconds) + TOKEN_GRACE, TOKEN_NOTE)
    except HubUnavailable:
        raise hub_unavailable() from None
    except HubError as e:
        if e.code == 404:
            raise BridgeError(404, "not_found", "This session's user is gone.") from None
        log.error("the hub refused a token for %s/%s: %s (does the bridge's role hold "
                  "the 'tokens' scope?)", rec.hub_user, rec.server_name, e)
        raise hub_unavailable("The notebook service refused to open the session's files.") from None
    try:
        yield SessionServer(server_url(settings, rec), token["token"], seconds)
    finally:
        try:
            await hub.delete_token(rec.hub_user, token["id"])
        except (HubUnavailable, HubError) as e:
            log.warning("token %s of %s not deleted (%s); it expires within %s s",
                        token.get("id"), rec.hub_user, e, int(seconds) + TOKEN_GRACE)


# -- one file (Save to portal) -------------------------------------------------


def fetch_file(server: SessionServer, parts: list[str], limit: int,
               max_bytes: int | None, out: IO[bytes]) -> int:
    """Copy one regular file of the home into ``out``; its size. 413
    ``too_large`` past ``limit`` (``max_bytes`` when given), whatever size
    the server announced. Blocking."""
    path = "/".join(parts)
    model = server.model(path, content=False)
    if model.get("type") not in ("file", "notebook"):
        raise bad_path("Only regular files can be saved (not folders).")
    announced = model.get("size")
    shown_max = max_bytes if max_bytes is not None else limit
    if isinstance(announced, int) and announced > limit:
        raise BridgeError(413, "too_large",
                          f"The file is {announced} bytes; at most {limit} bytes can be saved.",
                          size=announced, max_bytes=shown_max)
    longer = BridgeError(413, "too_large",
                         f"The file is more than {limit} bytes; at most {limit} can be saved.",
                         max_bytes=shown_max)
    return server.copy(server.open("files/" + path), out, limit, over_limit=longer)


async def open_file(hub: HubAPI, settings: Settings, runtime: dict, rec: SessionRecord,
                    path: str, max_bytes: int | None = None) -> tuple[IO[bytes], int]:
    """One file of a session's home read through its server: (a temporary
    file positioned at its start, its size); the caller closes it. The
    errors of ``session_files.open_file``, and 503 when the hub or the
    server does not answer."""
    parts = path_parts(path)
    limit = max_bytes if max_bytes is not None else home_budget(rec, runtime)
    spool = tempfile.TemporaryFile()
    try:
        async with server_access(hub, settings, rec, FILE_DEADLINE) as server:
            size = await asyncio.get_running_loop().run_in_executor(
                None, fetch_file, server, parts, limit, max_bytes, spool)
        spool.seek(0)
        return spool, size
    except BaseException:
        spool.close()
        raise


# -- the whole home (Download my work) ------------------------------------------


def _entry_name(name) -> str | None:
    """A listed name that can be a zip member's last component, or None."""
    if not isinstance(name, str) or name in ("", ".", "..") or len(name) > 255:
        return None
    if any(c in name for c in "/\\\x00"):
        return None
    return name


def _folder_info(arc: str, mtime: float) -> zipfile.ZipInfo:
    return zipfile.ZipInfo(arc + "/", time.gmtime(max(mtime, 315532800))[:6])


def _mtime(model: dict) -> float:
    try:
        return dt.datetime.fromisoformat(
            str(model.get("last_modified")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


class HomeZip:
    """The home as the session's server lists it, written into a zip.
    Blocking: ``fill`` runs on ``session_zip.stream_zip``'s worker thread."""

    def __init__(self, server: SessionServer, budget: int):
        self.server = server
        self.left = budget
        self.entries = 0
        self.missing: list[str] = []

    def fill(self, zf: zipfile.ZipFile) -> int:
        """Add the home's files; returns how many. An unanswered first
        listing raises (the visitor gets an error, not a zip); later, what
        cannot be read is named in ``INCOMPLETE``."""
        added = 0
        try:
            stack = [("", 0, self._listing(""))]
            while stack:
                rel, depth, names = stack[-1]
                if not names:
                    stack.pop()
                    continue
                entry = names.pop(0)
                arc = posixpath.join(rel, entry["name"]) if rel else entry["name"]
                if entry.get("type") == "directory":
                    if depth + 1 > session_zip.MAX_DEPTH:
                        self.missing.append(f"{arc}/: deeper than {session_zip.MAX_DEPTH} folders")
                        continue
                    zf.writestr(_folder_info(arc, _mtime(entry)), b"")
                    stack.append((arc, depth + 1, self._listing(arc)))
                elif entry.get("type") in ("file", "notebook"):
                    added += self._add_file(zf, arc, entry)
        except _Stop as stop:
            self.missing.append(str(stop))
        if self.missing:
            zf.writestr(INCOMPLETE, "This download is incomplete. Left out:\n"
                        + "".join(f"- {m}\n" for m in self.missing))
        return added

    def _listing(self, rel: str) -> list[dict]:
        """The entries of the folder ``rel`` worth zipping, by name."""
        try:
            model = self.server.model(rel, content=True)
        except BridgeError as e:
            if not rel:
                raise
            if e.status == 404:
                return []  # gone meanwhile
            raise _Stop(f"{rel}/ and what follows: {e.message}") from None
        content = model.get("content") if model.get("type") == "directory" else None
        entries = []
        for item in content if isinstance(content, list) else []:
            name = _entry_name(item.get("name") if isinstance(item, dict) else None)
            if name is None or (not rel and name in session_zip.EXCLUDED_TOP):
                continue
            self.entries += 1
            if self.entries > MAX_ENTRIES:
                raise _Stop(f"everything past the first {MAX_ENTRIES} files and folders")
            entries.append({**item, "name": name})
        return sorted(entries, key=lambda item: item["name"])

    def _add_file(self, zf: zipfile.ZipFile, arc: str, entry: dict) -> int:
        size = entry.get("size")
        limit = size if isinstance(size, int) and size >= 0 else self.left
        if limit > self.left:
            self.missing.append(f"{arc}: {size} bytes, past the {self.left} left of what "
                                "a session can hold")
            return 0
        try:
            opened = self.server.open("files/" + arc)
        except BridgeError as e:
            if e.status == 404:
                return 0  # gone meanwhile, or not served (hidden)
            raise _Stop(f"{arc} and what follows: {e.message}") from None
        try:
            with zf.open(session_zip._zip_info(arc, _mtime(entry), limit), "w",
                         force_zip64=True) as out:
                self.left -= self.server.copy(opened, out, limit)
        except BridgeError as e:
            raise _Stop(f"{arc} (cut short) and what follows: {e.message}") from None
        return 1


class _Stop(Exception):
    """The zip ends here; the message says what is left out."""
