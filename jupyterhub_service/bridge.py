"""The bridge: the internal API CKAN calls to launch and manage sessions.

A JupyterHub-managed service on its own port. Its routes sit at the root
(``/api/...``) because it is never a browser page. Every call needs
``Authorization: Bearer <api_token>``, compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
from pathlib import Path

from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback

from . import __version__, session_files, session_server_files
from .settings import Settings, hub_api_env, load
from .hub_api import HubAPI, HubError, HubUnavailable
from .pool import Pool
from .errors import BridgeError
from .reaper import Reaper
from .sessions import Sessions
from .store import Store
from .user_routes import visitor_app

log = logging.getLogger("bridge")

OPENAPI = Path(__file__).with_name("openapi.json")


class APIHandler(web.RequestHandler):
    @property
    def sessions(self) -> Sessions:
        return self.application.settings["sessions"]

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def prepare(self):
        # Session containers share a network with the hub, and with it this
        # port: they are turned away before the token is even looked at.
        peer = _address(self.request.remote_ip)
        if peer is not None and any(
                peer in net for net in self.application.settings["refused_networks"]):
            self.fail(BridgeError(403, "forbidden", "Sessions cannot call the bridge."))
            return
        token = self.application.settings["api_token"]
        header = self.request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            self.fail(BridgeError(401, "unauthorized", "A valid Bearer token is required."))

    def fail(self, err: BridgeError):
        self.set_status(err.status)
        if "retry_after" in err.extra:
            self.set_header("Retry-After", str(err.extra["retry_after"]))
        self.finish(err.body())

    def body(self):
        try:
            return json.loads(self.request.body or b"{}")
        except ValueError:
            raise BridgeError(400, "invalid", "the body is not valid JSON") from None

    def send(self, data, status=200):
        self.set_status(status)
        self.finish(json.dumps(data))

    def write_error(self, status_code, **kwargs):
        self.finish({"error": "internal" if status_code >= 500 else "http_error",
                     "message": self._reason})

    async def _guard(self, coro):
        try:
            return await coro
        except BridgeError as e:
            self.fail(e)
        except HubUnavailable:
            self.fail(BridgeError(503, "hub_unavailable", "The notebook service is not answering."))


class SessionsHandler(APIHandler):
    async def post(self):
        async def run():
            sess, created = await self.sessions.create(self.body())
            self.send(sess, 201 if created else 200)

        await self._guard(run())

    async def get(self):
        user_id = self.get_argument("user_id", None)
        dataset_id = self.get_argument("dataset_id", None)
        recs = await self.sessions.db.sessions(
            user_id=user_id, dataset_id=dataset_id, statuses=("pending", "ready", "stopping")
        )
        self.send({"sessions": [self.sessions.describe(r) for r in recs]})


class SessionHandler(APIHandler):
    async def get(self, session_id):
        rec = await self.sessions.db.get(session_id)
        if rec is None:
            return self.fail(BridgeError(404, "not_found", "No such session."))
        self.send(self.sessions.describe(rec))

    async def delete(self, session_id):
        async def run():
            rec = await self.sessions.end(session_id, "stopped by request")
            if rec is None:
                raise BridgeError(404, "not_found", "No such session.")
            if rec.status == "stopping":
                raise BridgeError(503, "hub_unavailable",
                                  "The session could not be stopped yet; it will be retried.")
            self.set_status(204)
            self.finish()

        await self._guard(run())


class ExtendHandler(APIHandler):
    async def post(self, session_id):
        async def run():
            self.send(await self.sessions.extend(session_id))

        await self._guard(run())


# bytes read from a session's file per write to the client
FILE_CHUNK = 1024 * 1024


class SessionFileHandler(APIHandler):
    """``GET /api/sessions/{id}/files?path=&max_bytes=``: one regular file of
    a live session's home, as it is: read from the host where the bridge can
    (session_files.py), else through the session's own server
    (session_server_files.py)."""

    async def get(self, session_id):
        async def run():
            rec = await self.sessions.db.get(session_id)
            if rec is None:
                raise BridgeError(404, "not_found", "No such session.")
            if rec.status != "ready":
                raise BridgeError(409, "not_running", "The session is not running.")
            max_bytes = self.get_argument("max_bytes", None)
            try:
                max_bytes = int(max_bytes) if max_bytes is not None else None
            except ValueError:
                raise BridgeError(400, "invalid", "max_bytes must be a whole number") from None
            f, size = await self._open(rec, self.get_argument("path", ""), max_bytes)
            loop = asyncio.get_running_loop()
            with f:
                self.set_header("Content-Type", "application/octet-stream")
                self.set_header("Content-Length", str(size))
                left = size
                while left > 0:
                    chunk = await loop.run_in_executor(None, f.read, min(FILE_CHUNK, left))
                    if not chunk:
                        break  # shrank while read: the client sees a short body
                    left -= len(chunk)
                    self.write(chunk)
                    await self.flush()
            self.finish()

        await self._guard(run())

    async def _open(self, rec, path: str, max_bytes: int | None):
        """(binary file, size) of the file ``path`` of the session's home."""
        settings = self.sessions.settings
        try:
            fd, size = await asyncio.get_running_loop().run_in_executor(
                None, session_files.open_file, settings, rec.id, path, max_bytes)
        except BridgeError as e:
            if e.code != "not_supported":
                raise
            return await session_server_files.open_file(
                self.sessions.hub, settings, self.sessions.runtime.current(), rec, path,
                max_bytes)
        return os.fdopen(fd, "rb"), size


class CapacityHandler(APIHandler):
    async def get(self):
        self.send(await self.sessions.capacity())


class SettingsHandler(APIHandler):
    async def get(self):
        self.send(await self.sessions.runtime.document())

    async def put(self):
        async def run():
            self.send(await self.sessions.runtime.update(self.body()))

        await self._guard(run())


class HealthHandler(APIHandler):
    async def get(self):
        try:
            await self.sessions.hub.version()
        except (HubUnavailable, HubError) as e:
            return self.send({"status": "degraded", "hub": "down", "message": str(e),
                              "version": __version__}, 503)
        self.send({"status": "ok", "hub": "ok", "version": __version__})


class OpenAPIHandler(APIHandler):
    def get(self):
        self.finish(OPENAPI.read_text())


class WorkspacesHandler(APIHandler):
    async def get(self):
        user_id = self.get_argument("user_id", None)
        self.send({"workspaces": await self.sessions.workspaces.list(user_id)})


class WorkspaceHandler(APIHandler):
    async def delete(self, user_id):
        async def run():
            await self.sessions.workspaces.delete(user_id)
            self.set_status(204)
            self.finish()

        await self._guard(run())


class WorkspaceDownloadHandler(APIHandler):
    async def get(self, user_id):
        async def run():
            path = await self.sessions.workspaces.zip(user_id)
            try:
                self.set_header("Content-Type", "application/zip")
                self.set_header("Content-Disposition", 'attachment; filename="work.zip"')
                self.set_header("Content-Length", str(os.path.getsize(path)))
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        self.write(chunk)
                        await self.flush()
                self.finish()
            finally:
                os.unlink(path)

        await self._guard(run())


# No xheaders: the peer address is the connection's, which no caller can
# rewrite with an X-Forwarded-For header.
HTTP_SERVER_OPTIONS: dict = {"xheaders": False}


def _address(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def make_app(settings: Settings, store: Store, hub: HubAPI,
             refused_networks=()) -> web.Application:
    """``refused_networks``: peers in these networks (the sessions network)
    get 403 whatever token they send."""
    from .report_api import ROUTES as REPORT_ROUTES
    from .report_runs import ReportRuns

    sessions = Sessions(settings, store, hub)
    return web.Application(
        [
            *REPORT_ROUTES,
            (r"/api/sessions", SessionsHandler),
            (r"/api/sessions/([^/]+)", SessionHandler),
            (r"/api/sessions/([^/]+)/extend", ExtendHandler),
            (r"/api/sessions/([^/]+)/files", SessionFileHandler),
            (r"/api/capacity", CapacityHandler),
            (r"/api/settings", SettingsHandler),
            (r"/api/health", HealthHandler),
            (r"/api/openapi.json", OpenAPIHandler),
            (r"/api/workspaces", WorkspacesHandler),
            (r"/api/workspaces/([^/]+)", WorkspaceHandler),
            (r"/api/workspaces/([^/]+)/download", WorkspaceDownloadHandler),
        ],
        sessions=sessions,
        report_runs=ReportRuns(sessions),
        api_token=settings.api_token,
        refused_networks=[ipaddress.ip_network(n) for n in refused_networks],
    )


# how long the start-up waits for sessions that lost their server to end
# before it serves anyway (their teardowns go on in the background)
RECOVER_TIMEOUT = 60


def recover(reaper: Reaper) -> None:
    """End, before serving, what a restart left behind: a visitor clicking
    again right after a hub restart must not be sent to a dead server."""
    try:
        IOLoop.current().run_sync(reaper.recover, timeout=RECOVER_TIMEOUT)
    except Exception:
        log.exception("start-up recovery did not finish; the reaper goes on")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[bridge %(asctime)s %(levelname)s] %(message)s")
    settings = load()
    if not settings.api_token:
        raise SystemExit("CKAN_JUPYTERHUB_API_TOKEN is required")
    api_url, token = hub_api_env()
    store = Store(settings.bridge_db_url)
    hub = HubAPI(api_url, token)
    refused = []
    if settings.spawner != "local":
        from .session_network import network_subnets

        refused = network_subnets(settings.sessions_network)
        log.info("refusing callers from the sessions network %s (%s)",
                 settings.sessions_network, ", ".join(map(str, refused)) or "no subnet found")
    app = make_app(settings, store, hub, refused_networks=refused)
    sessions = app.settings["sessions"]
    sessions.attach_pool(Pool(sessions))
    remove_engine_orphans = None
    if settings.spawner != "local":
        from .container_orphans import remove_orphans
        from .pool_claim import claim_hook

        sessions.on_claim = claim_hook(settings)
        remove_engine_orphans = remove_orphans
    reaper = Reaper(sessions, remove_engine_orphans)
    runs = app.settings["report_runs"]
    reaper.reconciler.other_owners.append(runs.servers.owners)
    sessions.runtime.current()  # read once, before serving
    # The visitor's routes (user_routes.py), on a loopback port of their own
    # that only the hub's proxy forwards to, are served before the recovery: the
    # hub waits for its managed service's url before it goes on starting.
    visitor = visitor_app(sessions, app.settings["refused_networks"])
    if visitor is not None:
        visitor.listen(settings.visitor_port, address="127.0.0.1", **HTTP_SERVER_OPTIONS)
        log.info("visitor routes on 127.0.0.1:%s", settings.visitor_port)
    recover(reaper)
    IOLoop.current().add_callback(reaper.after_start)
    IOLoop.current().add_callback(runs.resume)
    app.listen(settings.bridge_port, address=settings.bridge_host, **HTTP_SERVER_OPTIONS)
    log.info("bridge listening on %s:%s", settings.bridge_host, settings.bridge_port)
    PeriodicCallback(lambda: asyncio.ensure_future(reaper.run_once()),
                     settings.reaper_interval * 1000).start()
    PeriodicCallback(lambda: asyncio.ensure_future(runs.servers.housekeeping()), 5000).start()
    try:
        IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT
        log.info("bridge stopped")


if __name__ == "__main__":
    main()
