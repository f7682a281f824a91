"""The bridge's routes for the visitor's own browser: what JupyterLab's
session extension calls (time left, Extend, Download my work, Save to portal).

Served by the bridge process under the proxy's ``/services/bridge/`` (the
hub gives the managed service a ``url``); the proxy forwards nothing else to
the bridge, so the internal ``/api/...`` routes stay out of a browser's reach.

Who is asking is the hub's OAuth identity (``HubOAuthenticated``; the service
is declared ``oauth_no_confirm`` and the ``user`` role holds
``access:services!service=bridge``). The session is that hub user's live
session on ``server_name``: nothing the page sends names a session id, a
user or a dataset, so a page can only ever reach its own user's sessions.
Cookie-authenticated POSTs need the XSRF token, which the session answer
carries (the ``_xsrf`` cookie is scoped to this service's path, where the
JupyterLab page cannot read it).

Notebook code can call these routes as the page can; the most it gets is
what its own user may do with their own sessions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
from contextlib import asynccontextmanager
from pathlib import Path

# JupyterHub's own XSRF cookie helpers (the same in 5.x and 6.x): the page
# gets its token from the session answer, see UserHandler.xsrf_for_page
from jupyterhub._xsrf_utils import _get_xsrf_token_cookie, _set_xsrf_cookie
from jupyterhub.services.auth import (
    HubOAuth,
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    UserNotAllowed,
)
from tornado import web
from tornado.iostream import StreamClosedError

from . import session_server_files, session_zip
from .errors import BridgeError
from .hub_api import HubError, HubUnavailable
from .store import LIVE, SessionRecord, utcnow

log = logging.getLogger("bridge.user_routes")

#: JupyterHub's named-server slugs, as the bridge makes them
SERVER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,29}$")

GUEST_SAVE_MESSAGE = ("Log in to the portal with edit rights on this dataset to save files "
                      "to it. Download my work keeps a copy on your computer.")


class UserHandler(HubOAuthenticated, web.RequestHandler):
    """A route of the visitor's browser. ``prepare`` identifies the hub user
    (OAuth cookie or token, with HubOAuthenticated's scope and XSRF checks)
    without blocking the loop."""

    def initialize(self, sessions, hub_auth, refused_networks):
        self.sessions = sessions
        self.hub_auth = hub_auth
        self.refused_networks = refused_networks

    def set_default_headers(self):
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def prepare(self):
        peer = _address(self.request.remote_ip)
        if peer is not None and any(peer in net for net in self.refused_networks):
            raise BridgeError(403, "forbidden", "Sessions cannot call the bridge directly.")
        model = await self.hub_auth.get_user(self, sync=False)
        if model:
            try:
                model = self.check_hub_user(model)
            except UserNotAllowed:
                model = None
        self.current_user = model

    def fail(self, err: BridgeError):
        self.clear_header("Content-Disposition")
        self.set_header("Content-Type", "application/json")
        self.set_status(err.status)
        if "retry_after" in err.extra:
            self.set_header("Retry-After", str(err.extra["retry_after"]))
        self.finish(json.dumps(err.body()))

    def send(self, data: dict):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, BridgeError):
            return self.fail(exc)
        self.set_header("Content-Type", "application/json")
        code = "internal" if status_code >= 500 else "http_error"
        self.finish(json.dumps({"error": code, "message": self._reason}))

    def log_exception(self, typ, value, tb):
        if isinstance(value, BridgeError):
            return  # an answer, not a failure
        super().log_exception(typ, value, tb)

    def _handle_request_exception(self, e):
        if isinstance(e, HubUnavailable):
            e = BridgeError(503, "hub_unavailable", "The notebook service is not answering.")
        if not isinstance(e, BridgeError):
            return super()._handle_request_exception(e)
        if self._finished:
            return
        if self._headers_written:
            # a download already under way: the client sees it cut short
            log.warning("%s %s failed midway: %s", self.request.method, self.request.path, e)
            self.request.connection.close()
            return
        self.fail(e)

    # -- who and which session ----------------------------------------------

    async def own_session(self, server_name: str) -> SessionRecord:
        """The caller's live session on ``server_name``; 403 when nobody is
        logged in, 404 when that user has no such session."""
        user = self.current_user
        if not user:
            raise BridgeError(403, "not_logged_in",
                              "Reload JupyterLab: its sign-in to the notebook service is "
                              "missing or has expired.")
        if user.get("kind", "user") != "user":
            raise BridgeError(403, "forbidden", "Only the session's own visitor may ask.")
        if not SERVER_NAME.match(server_name):
            raise BridgeError(404, "not_found", "No such session.")
        recs = await self.sessions.db.sessions(hub_user=user["name"], statuses=LIVE)
        rec = next((r for r in recs if r.server_name == server_name), None)
        if rec is None:
            raise BridgeError(404, "not_found", "This session has ended, or is not yours.")
        return rec

    async def session_body(self, rec: SessionRecord) -> dict:
        described = self.sessions.describe(rec)
        refusal = self.sessions.extensions.refusal(rec)
        can_save, save_refusal, save_message = _save_state(rec)
        idle_timeout = int((rec.limits or {}).get("idle_timeout") or 0)
        return {
            "server_name": rec.server_name,
            "status": rec.status,
            "user_kind": rec.user_kind,
            "started_at": described["started_at"],
            "expires_at": described["expires_at"],
            "seconds_left": rec.seconds_left(),
            "max_expires_at": described.get("max_expires_at"),
            "idle_timeout": idle_timeout,
            "idle_seconds_left": await self._idle_seconds_left(rec, idle_timeout),
            "can_extend": refusal is None,
            "extend_refusal": refusal.code if refusal else None,
            "extend_message": refusal.message if refusal else None,
            "can_save": can_save,
            "save_refusal": save_refusal,
            "save_message": save_message,
            "dataset": {"title": rec.dataset_title or rec.dataset_name, "url": rec.dataset_url},
            "notebook_resource_id": rec.notebook_resource_id,
            "notebook_path": _opened_notebook(rec),
            "xsrf_token": self.xsrf_for_page(),
        }

    async def _idle_seconds_left(self, rec: SessionRecord, idle_timeout: int) -> int | None:
        """Seconds until the idle timeout by the hub's last activity of the
        server (reported every 30 s), or None (off, or unknown)."""
        if not idle_timeout:
            return None
        try:
            server = await self.sessions.hub.server(rec.hub_user, rec.server_name)
        except (HubUnavailable, HubError):
            return None
        value = (server or {}).get("last_activity")
        if not value:
            return None
        last = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return max(0, int(idle_timeout - (utcnow() - last).total_seconds()))

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise BridgeError(400, "invalid", "The body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise BridgeError(400, "invalid", "The body must be a JSON object.")
        return body

    def check_xsrf_cookie(self):
        """JupyterHub's XSRF rule, except for reads from the hub's own origin.

        JupyterHub refuses the cookie on a ``fetch()`` GET without the XSRF
        token; the page cannot have the token before its first answer (the
        ``_xsrf`` cookie lives on this service's path). A same-origin GET
        changes nothing, and only the hub's origin can read its answer: there,
        every page is the hub's or one of the user's own servers (hub users
        cannot reach other users' servers, nor share theirs). Cross-site reads
        and every POST still need the token."""
        same_origin = self.request.headers.get("Sec-Fetch-Site") == "same-origin"
        if self.request.method in ("GET", "HEAD") and same_origin:
            return
        super().check_xsrf_cookie()

    def xsrf_for_page(self) -> str:
        """The XSRF token the page sends back with its POSTs. The ``_xsrf``
        cookie is set with it when the browser lacks a valid one (JupyterHub
        sets it only on page navigations and at the OAuth callback)."""
        token = self.xsrf_token
        _, cookie_id = _get_xsrf_token_cookie(self)
        if cookie_id != self._xsrf_token_id:
            _set_xsrf_cookie(self, self._xsrf_token_id, cookie_path=self.hub_auth.base_url,
                             xsrf_token=token, authenticated=True)
        return token.decode("ascii")


class SessionInfoHandler(UserHandler):
    """``GET session/{server_name}``: the end, time left, what the buttons may do."""

    async def get(self, server_name):
        if not self.current_user:
            # the first call of a page: the OAuth round trip with the hub sets
            # this service's cookie (fetch follows the redirects)
            return self.redirect(self.get_login_url())
        rec = await self.own_session(server_name)
        self.send(await self.session_body(rec))


class ExtendHandler(UserHandler):
    """``POST session/{server_name}/extend``: the session with its new end."""

    async def post(self, server_name):
        rec = await self.own_session(server_name)
        await self.sessions.extend(rec.id)
        self.send(await self.session_body(await self.sessions.db.get(rec.id)))


class SaveHandler(UserHandler):
    """``POST session/{server_name}/save`` ``{path, name?, replace?}``: one
    file of the home saved to the dataset, through CKAN as the session's user."""

    async def post(self, server_name):
        rec = await self.own_session(server_name)
        can_save, refusal, message = _save_state(rec)
        if not can_save:
            raise BridgeError(403, refusal, message)
        body = self.json_body()
        path, name = body.get("path"), body.get("name")
        if not isinstance(path, str) or not path.strip():
            raise BridgeError(400, "bad_path", "Choose a file of the session's home to save.")
        if name is not None and not isinstance(name, str):
            raise BridgeError(400, "invalid", "name must be text.")
        replace = body.get("replace", False)
        if not isinstance(replace, bool):
            raise BridgeError(400, "invalid", "replace must be true or false.")
        if replace and not rec.notebook_resource_id:
            raise BridgeError(400, "invalid", "This session was not opened from a notebook "
                                              "resource; save it as a new resource.")
        from .portal_save import resource_url, save_to_portal

        resource = await save_to_portal(self.sessions.settings, rec, path.strip(),
                                        name=(name or "").strip() or None, replace=replace)
        self.send({"resource": resource, "url": resource_url(rec, resource)})


class DownloadHandler(UserHandler):
    """``GET session/{server_name}/download``: a zip of the home, streamed."""

    async def get(self, server_name):
        if not self.current_user:
            return self.redirect(self.get_login_url())
        rec = await self.own_session(server_name)
        async with self._filler(rec) as fill:
            stamp = utcnow().strftime("%Y%m%d-%H%M")
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", rec.dataset_name or rec.server_name)[:60]
            self.set_header("Content-Type", "application/zip")
            self.set_header("Content-Disposition",
                            f'attachment; filename="{name}-work-{stamp}.zip"')
            chunks = session_zip.stream_zip(fill)
            try:
                async for chunk in chunks:
                    self.write(chunk)
                    await self.flush()
            except StreamClosedError:
                return  # the visitor went away; the zipping thread stops
            finally:
                await chunks.aclose()
            self.finish()

    @asynccontextmanager
    async def _filler(self, rec: SessionRecord):
        """What writes this session's home into a zip (on a worker thread),
        for as long as the zip is being made: from the host where the bridge
        can read the home; else on swarm through the session's own server
        (session_server_files.py), with docker from the engine's archive."""
        from .session_files import home_of

        settings = self.sessions.settings
        try:
            home = home_of(settings, rec.id)
        except BridgeError as e:
            if e.code != "not_supported":
                raise
            home = None
        if home is None and settings.spawner == "swarm":
            budget = session_server_files.home_budget(rec, self.sessions.runtime.current())
            async with session_server_files.server_access(
                    self.sessions.hub, settings, rec, session_server_files.ZIP_DEADLINE) as server:
                yield session_server_files.HomeZip(server, budget).fill
            return
        if home is None:
            yield self._container_filler(rec)
            return
        if not home.is_dir():
            raise BridgeError(404, "not_found", "The session has no home.")
        work = await self._workspace_path(rec) if settings.spawner != "local" else None

        def fill(zf):
            session_zip.zip_tree(zf, home)
            if work is not None:  # mounted in the container only; on the host it is here
                session_zip.zip_tree(zf, work, prefix="work", exclude_top=frozenset())

        yield fill

    def _container_filler(self, rec: SessionRecord):
        def fill(zf):
            chunks = session_zip.container_home_archive(rec.hub_user, rec.server_name)
            if chunks is None:
                raise BridgeError(404, "not_found", "The session's container is not running.")
            session_zip.zip_tar_stream(zf, chunks)

        return fill

    async def _workspace_path(self, rec: SessionRecord) -> Path | None:
        """The host directory of the workspace this session holds, if any."""
        workspaces = getattr(self.sessions, "workspaces", None)
        if workspaces is None or rec.user_kind != "user":
            return None
        ws = await self.sessions.db.workspace(rec.user_id)
        if ws is None or ws.holder != rec.id:
            return None
        return Path(workspaces.disk(ws).path)


class ServiceRootHandler(web.RequestHandler):
    """``/services/bridge/`` itself: the hub checks each service's URL once
    a minute (``check_services_health``), and a 404 there was logged as a
    warning every minute. It names nothing and needs no login."""

    def get(self):
        self.set_header("Cache-Control", "no-store")
        self.finish({"service": "bridge"})


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    """The end of the OAuth round trip: sets this service's cookie."""

    def initialize(self, hub_auth):
        self.hub_auth = hub_auth


def _save_state(rec: SessionRecord) -> tuple[bool, str | None, str | None]:
    """(can_save, refusal code, message) as far as the bridge can tell;
    CKAN checks the user's edit rights when the file is sent."""
    if rec.user_kind != "user":
        return False, "login_required", GUEST_SAVE_MESSAGE
    if not rec.portal_url:
        return False, "no_portal", ("This session was started before saving was possible; "
                                    "open the dataset again to save from a new session.")
    return True, None, None


def _opened_notebook(rec: SessionRecord) -> str | None:
    """The home's copy of the notebook resource the session was opened from."""
    return next((nb.get("filename") for nb in rec.notebooks or []
                 if rec.notebook_resource_id and nb.get("resource_id") == rec.notebook_resource_id),
                None)


def _address(text: str):
    import ipaddress

    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def cookie_secret(state_dir: Path) -> bytes:
    """This service's cookie-signing key, kept in the state directory (root
    only) so that a bridge restart keeps the visitors' sign-ins."""
    path = Path(state_dir) / "bridge_cookie_secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        secret = secrets.token_hex(32).encode()
        f.write(secret)
    return secret


def visitor_app(sessions, refused_networks=()) -> web.Application | None:
    """The visitor's routes as an application of their own (the bridge
    serves it on ``visitor_port``, which only the hub's proxy calls), or
    None when the hub did not make the bridge an OAuth client (no ``url``
    in its service entry, or run outside the hub)."""
    from traitlets import TraitError

    try:
        auth = HubOAuth(cache_max_age=60)
        auth.oauth_client_id, auth.api_token  # noqa: B018 (validated on first read)
    except (TraitError, ValueError) as e:
        log.info("no visitor routes: %s", e)
        return None
    prefix = auth.base_url  # JUPYTERHUB_SERVICE_PREFIX, e.g. /services/bridge/
    kwargs = {"sessions": sessions, "hub_auth": auth, "refused_networks": list(refused_networks)}
    server = r"([^/]+)"
    handlers = [
        (rf"{prefix}", ServiceRootHandler),
        (rf"{prefix}session/{server}", SessionInfoHandler, kwargs),
        (rf"{prefix}session/{server}/extend", ExtendHandler, kwargs),
        (rf"{prefix}session/{server}/save", SaveHandler, kwargs),
        (rf"{prefix}session/{server}/download", DownloadHandler, kwargs),
        (rf"{prefix}oauth_callback", OAuthCallbackHandler, {"hub_auth": auth}),
    ]
    return web.Application(handlers, cookie_secret=cookie_secret(sessions.settings.state_dir))
