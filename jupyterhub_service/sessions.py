"""The two flows of a session, top to bottom: launch and end.

Launch: ``admission`` reserves a slot (one atomic step), ``scratch`` lays out
the home and data, ``servers`` starts the hub's named server and waits until
it answers, and the answer carries a one-time ``launch_ticket``. End: the
server stops, a guest's hub user goes, the scratch is removed, the record is
kept (ended) for a day. The clock and the restarts are in ``reaper``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlencode

from . import launch_ticket
from .admission import Admission
from .errors import BridgeError, hub_unavailable
from .extension import Extensions
from .hub_api import HubAPI, HubUnavailable
from .runtime import RuntimeSettings
from .scratch import Scratch
from .servers import Servers, StopFailed
from .settings import Settings
from .workspaces import Workspaces, WorkspaceError
from .store import LIVE, AsyncStore, SessionRecord, Store, aware, iso, utcnow

log = logging.getLogger("bridge.sessions")

PIDS_LIMIT = 256
#: the reason the reaper ends a session whose time is up
EXPIRED = "time is up"


def validate_request(req) -> None:
    def bad(msg):
        raise BridgeError(400, "invalid", msg)

    if not isinstance(req, dict):
        bad("the body must be a JSON object")
    user = req.get("user")
    if not isinstance(user, dict) or user.get("kind") not in ("guest", "user") or not user.get("id"):
        bad("user must be {kind: guest|user, id, name}")
    ds = req.get("dataset")
    if not isinstance(ds, dict) or not ds.get("id"):
        bad("dataset must be {id, name, title, url}")
    res = req.get("resources", [])
    if not isinstance(res, list) or not all(isinstance(r, dict) and r.get("id") for r in res):
        bad("resources must be a list of {id, name, format, fetch_url, ...}")
    nb = req.get("notebook_resource_id")
    if nb and nb not in {r["id"] for r in res}:
        bad("notebook_resource_id is not one of the resources")
    portal = req.get("portal_url")
    if portal is not None and not (isinstance(portal, str)
                                   and portal.startswith(("http://", "https://"))):
        bad("portal_url must be an http(s) URL")


class Sessions:
    def __init__(self, settings: Settings, store: Store, hub: HubAPI):
        self.settings = settings
        self.db = AsyncStore(store)
        self.hub = hub
        self.runtime = RuntimeSettings(settings, self.db)
        self.admission = Admission(self.db)
        self.scratch = Scratch(settings)
        self.workspaces = Workspaces(settings, self.db, self.runtime)
        self.servers = Servers(hub)
        self.ticket_key = launch_ticket.ticket_key(settings.api_token)
        self.ending: dict[str, asyncio.Task] = {}
        self.extensions = Extensions(self.db, self.runtime)
        self.pool = None  # the warm pool (pool.Pool), see attach_pool
        # called with (record, paths) when a pooled server is claimed, for
        # spawners whose home is not the host directory (docker)
        self.on_claim = None

    def attach_pool(self, pool) -> None:
        self.pool = pool
        self.admission.pool_take = pool.take
        self.runtime.listeners.append(pool.settings_changed)

    def _kick_pool(self) -> None:
        if self.pool is not None:
            self.pool.kick()

    async def capacity(self) -> dict:
        rt = self.runtime.current()
        counts = await self.db.live_counts()
        pool = await self.pool.counts() if self.pool is not None else {"ready": 0, "size": 0}
        return {
            "guests": {"active": counts["guest"], "max": rt["max_guests"]},
            "users": {"active": counts["user"]},
            "sessions": {"active": counts["guest"] + counts["user"], "max": rt["max_sessions"],
                         "stopping": counts["stopping"]},
            "pool": pool,
        }

    # -- launch -------------------------------------------------------------

    async def create(self, req: dict) -> tuple[dict, bool]:
        """The visitor's session on the dataset: (session, created)."""
        validate_request(req)
        rt = self.runtime.current()
        if req["user"]["kind"] == "guest" and not rt["guest_access"]:
            raise BridgeError(403, "guest_access_off", "Guest sessions are turned off on this portal.")
        notebook_id = req.get("notebook_resource_id")
        try:
            reservation = await self.admission.reserve(req, rt)
        except BridgeError as e:
            self.extensions.note_refusal(e.code)
            raise
        rec = reservation.record
        if reservation.joined:
            return await self._join(rec, notebook_id), False
        await self.db.update(rec.id, notebook_resource_id=notebook_id,
                             portal_url=req.get("portal_url"))
        for sid in reservation.replaced:
            asyncio.ensure_future(self.end(sid, "replaced by a new guest session"))
        done = self.admission.launching[rec.id]
        try:
            await self._start(rec, req.get("resources", []), notebook_id)
            rec = await self.db.get(rec.id)
        except BaseException as e:
            await self._cleanup_failed(rec, e)
            raise
        finally:
            done.set_result(None)
            self.admission.launching.pop(rec.id, None)
        self._kick_pool()
        return self._answer(rec, notebook_id), True

    async def _join(self, rec: SessionRecord, notebook_id: str | None) -> dict:
        """Back to a running session, or to one still starting."""
        done = self.admission.launching.get(rec.id)
        if done is not None:
            await asyncio.shield(done)
            rec = await self.db.get(rec.id)
        if rec.status != "ready":
            raise hub_unavailable(rec.message or "The session could not start.")
        return self._answer(rec, notebook_id)

    async def _start(self, rec: SessionRecord, resources, notebook_id) -> None:
        dataset = {"id": rec.dataset_id, "name": rec.dataset_name, "title": rec.dataset_title,
                   "url": rec.dataset_url}
        paths = await self.scratch.prepare(rec.id, dataset, resources, notebook_id)
        try:
            workspace_dir = await self.workspaces.attach(rec, Path(paths["home_dir"]))
        except WorkspaceError as e:
            log.error("workspace of %s: %s", rec.user_id, e)
            raise BridgeError(503, "workspace_unavailable",
                              "Your workspace could not be opened; try again later.") from None
        await self.db.update(rec.id, cache_keys=paths["cache_keys"], notebooks=paths["notebooks"],
                             open_path=paths["open_path"])
        if rec.from_pool:
            if await self._claim(rec, paths):
                return
        options = {
            "session_id": rec.id,
            "dataset_id": rec.dataset_id,
            "dataset_name": rec.dataset_name,
            "expires_at": iso(rec.expires_at),
            "limits": {**rec.limits, "pids": PIDS_LIMIT},
            "data_dir": paths["data_dir"],
            "home_dir": paths["home_dir"],
            "home_seed_dir": paths["home_seed_dir"],
            "open_path": paths["open_path"],
        }
        if workspace_dir:
            options["workspace_dir"] = workspace_dir
        await self.servers.spawn(rec.hub_user, rec.server_name, options)
        await self.db.update(rec.id, status="ready")

    async def _claim(self, rec: SessionRecord, paths: dict) -> bool:
        """Hand a ready pool server to this session; False when it is gone."""
        try:
            server = await self.hub.server(rec.hub_user, rec.server_name)
        except HubUnavailable:
            raise hub_unavailable() from None
        if not (server and server.get("ready")):
            log.warning("pool server %s/%s is gone; starting afresh", rec.hub_user, rec.server_name)
            return False
        if self.on_claim is not None:
            await self.on_claim(rec, paths)
        await self.db.update(rec.id, status="ready")
        return True

    async def _cleanup_failed(self, rec: SessionRecord, error: BaseException) -> None:
        msg = error.message if isinstance(error, BridgeError) else "launch failed"
        log.warning("launch of %s failed: %s", rec.id, error)
        await self.db.update(rec.id, status="error", message=msg)
        try:
            await self._teardown(rec)
        except Exception as e:
            # the record stays an error with no ended_at: the reaper retries
            log.warning("cleanup after the failed launch of %s: %s", rec.id, e)
            return
        await self.db.update(rec.id, ended_at=utcnow())

    def launch_url(self, rec: SessionRecord, open_path: str | None = None) -> str:
        base = self.settings.hub_base_url.rstrip("/") + "/"
        next_path = f"{base}user/{rec.hub_user}/{rec.server_name}/lab/tree/{open_path or rec.open_path}"
        ticket = launch_ticket.issue(self.ticket_key, rec.hub_user, rec.server_name, next_path)
        return f"{self.settings.hub_url.rstrip('/')}{base}hub/login?" + urlencode(
            {"ticket": ticket, "next": next_path}
        )

    def _answer(self, rec: SessionRecord, notebook_resource_id: str | None) -> dict:
        open_path = next((nb["filename"] for nb in rec.notebooks or []
                          if notebook_resource_id and nb.get("resource_id") == notebook_resource_id),
                         rec.open_path)
        return self.describe(rec, self.launch_url(rec, open_path))

    def describe(self, rec: SessionRecord, launch_url: str | None = None) -> dict:
        """The session as the API shows it, with what Extend can do now."""
        return {**rec.to_dict(launch_url), **self.extensions.fields(rec)}

    # -- keeping work ---------------------------------------------------------

    async def extend(self, session_id: str) -> dict:
        """Move the session's end by ``timeout`` (see ``extension``); the
        session with its new ``expires_at``, or BridgeError (404
        ``not_found``, 409 ``not_running`` / ``extend_limit``, 403
        ``guests_cannot_extend``, 429 ``capacity``)."""
        rec = await self.extensions.extend(session_id)
        log.info("session %s extended to %s", session_id, iso(rec.expires_at))
        return self.describe(rec)

    # -- ending -------------------------------------------------------------

    async def end(self, session_id: str, reason: str = "ended") -> SessionRecord | None:
        """Stop the server, delete the scratch and a guest's hub user, keep
        the ended record. Concurrent calls share one teardown. A teardown
        that fails leaves the record ``stopping``; the reaper retries it."""
        task = self.ending.get(session_id)
        if task is None:
            task = asyncio.ensure_future(self._end(session_id, reason))
            self.ending[session_id] = task
            task.add_done_callback(lambda _t: self.ending.pop(session_id, None))
        return await asyncio.shield(task)

    async def _end(self, session_id: str, reason: str) -> SessionRecord | None:
        rec = await self.db.get(session_id)
        if rec is None or rec.status in ("ended", "error"):
            return rec
        if reason == EXPIRED and rec.status == "ready" and aware(rec.expires_at) > utcnow():
            return rec  # extended after the reaper read it
        done = self.admission.launching.get(session_id)
        if done is not None:
            await asyncio.shield(done)
            rec = await self.db.get(session_id)
            if rec.status in ("ended", "error"):
                return rec
        log.info("ending session %s (%s)", session_id, reason)
        if rec.status != "stopping":
            await self.db.update(session_id, status="stopping", message=reason)
        try:
            await self._teardown(rec)
        except StopFailed as e:
            log.warning("ending %s: %s; will retry", session_id, e)
            return await self.db.get(session_id)
        return await self.db.update(session_id, status="ended", ended_at=utcnow())

    async def _teardown(self, rec: SessionRecord) -> None:
        async def others() -> list[SessionRecord]:
            live = await self.db.sessions(hub_user=rec.hub_user, statuses=LIVE)
            return [s for s in live if s.id != rec.id]

        async def server_taken() -> bool:
            # the same CKAN user relaunched this dataset while it stopped
            return any(s.server_name == rec.server_name for s in await others())

        async def user_needed() -> bool:
            return bool(await others())

        await self.servers.release(rec.hub_user, rec.server_name,
                                   server_taken=server_taken, user_needed=user_needed)
        try:
            await self.workspaces.detach(rec, self.scratch.path(rec.id) / "home")
        except Exception as e:  # the reaper lets go of it later
            log.warning("workspace of %s not detached from %s: %s", rec.user_id, rec.id, e)
        await self.scratch.remove(rec.id)
        self._kick_pool()

    async def teardown_server(self, hub_user: str, server_name: str, slot_id: str) -> None:
        """Stop a server no session owns (a pool slot), delete its hub user,
        remove its scratch. StopFailed when the hub did not do its part."""
        async def no() -> bool:
            return False

        await self.servers.release(hub_user, server_name, server_taken=no, user_needed=no)
        await self.scratch.remove(slot_id)
        self._kick_pool()
