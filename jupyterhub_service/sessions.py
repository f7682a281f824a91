"""Launching and ending sessions: capacity, identity, scratch and the clock.

Caps are reserved under one asyncio lock, in this single bridge process,
before anything is spawned; a pending launch holds its slot. Everything slow
(downloads, the spawn, waiting for the server) happens outside the lock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import pwd
import secrets
import shutil
import time
from collections import defaultdict, deque
from pathlib import Path
from urllib.parse import urlencode

from . import launch_ticket, start_here
from .hub_api import HubAPI, HubError, HubUnavailable
from .preload import ResourceCache, ResourceSpec, populate_data_dir
from .settings import RUNTIME_KEYS, Settings, parse_bytes, validate_runtime
from .store import LIVE, SessionRecord, Store, iso, utcnow, aware

log = logging.getLogger("bridge.sessions")

START_TIMEOUT = 120
ENDED_KEPT = dt.timedelta(days=1)


class BridgeError(Exception):
    """An error with an HTTP status and a stable code, as the API reports it."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict:
        return {"error": self.code, "message": self.message, **self.extra}


def server_slug(dataset_id: str) -> str:
    """A valid, short JupyterHub server name for a dataset."""
    return "d-" + hashlib.sha256(dataset_id.encode()).hexdigest()[:10]


def hub_user_for(kind: str, user_id: str) -> str:
    if kind == "guest":
        return "guest-" + secrets.token_hex(5)
    safe = "".join(c for c in user_id.lower() if c.isalnum() or c == "-")[:60]
    return "ckan-" + (safe or hashlib.sha256(user_id.encode()).hexdigest()[:16])


class RateLimiter:
    """Launches per client address in a sliding minute."""

    def __init__(self):
        self.hits: dict[str, deque] = defaultdict(deque)

    def check(self, key: str, per_minute: int) -> float:
        """0 when allowed (and counted), else seconds until the next slot."""
        if per_minute <= 0:
            return 0
        now = time.monotonic()
        q = self.hits[key]
        while q and now - q[0] > 60:
            q.popleft()
        if len(q) >= per_minute:
            return max(1.0, 60 - (now - q[0]))
        q.append(now)
        return 0


class Sessions:
    def __init__(self, settings: Settings, store: Store, hub: HubAPI):
        self.settings = settings
        self.store = store
        self.hub = hub
        self.lock = asyncio.Lock()
        self.rate = RateLimiter()
        self.in_flight: dict[str, asyncio.Future] = {}
        self.ending: dict[str, asyncio.Task] = {}
        self.ticket_key = launch_ticket.ticket_key(settings.api_token)
        self._runtime: dict | None = None
        self._last_housekeeping = 0.0
        root = settings.storage_root
        self.sessions_root = root / "sessions"
        for d, mode in ((root, 0o711), (self.sessions_root, 0o711)):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, mode)
        self.cache = ResourceCache(
            root / "cache",
            max_bytes=parse_bytes(settings.cache_size),
            max_resource_size=parse_bytes(settings.max_resource_size),
            download_timeout=settings.download_timeout,
            fetch_allowlist=settings.allowlist,
        )
        self.pool = None  # the warm pool (pool.Pool), set by the bridge
        # called with (record, paths) when a pooled server is claimed, for
        # spawners whose home is not the host directory (docker)
        self.on_claim = None

    # -- settings -----------------------------------------------------------

    def runtime(self) -> dict:
        """The runtime settings in force; only update_settings changes them,
        so they are read from the database once."""
        if self._runtime is None:
            values = self.settings.runtime_defaults()
            saved, _ = self.store.saved_settings()
            values.update({k: v for k, v in saved.items() if k in RUNTIME_KEYS})
            self._runtime = values
        return dict(self._runtime)

    def settings_doc(self) -> dict:
        values = {
            k: getattr(self.settings, k)
            for k in (
                "hub_url",
                "hub_base_url",
                "api_url",
                "spawner",
                "network",
                "storage_path",
                "max_resource_size",
                "download_timeout",
                "fetch_allowlist",
            )
        }
        values.update(self.runtime())
        _, updated = self.store.saved_settings()
        values["updated_at"] = iso(updated)
        return values

    def update_settings(self, changes: dict) -> dict:
        if not isinstance(changes, dict) or not changes:
            raise BridgeError(400, "invalid", "send a JSON object of settings")
        parsed, errors = {}, {}
        for key, value in changes.items():
            if key == "updated_at":
                continue
            try:
                parsed[key] = validate_runtime(key, value)
            except ValueError as e:
                errors[key] = str(e)
        if errors:
            raise BridgeError(400, "invalid", "; ".join(errors.values()), fields=errors)
        self.store.save_settings(parsed)
        self._runtime = None
        if self.pool is not None:
            self.pool.settings_changed()
        return self.settings_doc()

    # -- capacity -----------------------------------------------------------

    def capacity(self) -> dict:
        rt = self.runtime()
        counts = self.store.live_counts()
        pool = self.pool.counts() if self.pool is not None else {"ready": 0, "size": 0}
        return {
            "guests": {"active": counts["guest"], "max": rt["max_guests"]},
            "users": {"active": counts["user"]},
            "sessions": {"active": counts["guest"] + counts["user"], "max": rt["max_sessions"]},
            "pool": pool,
        }

    # -- launch -------------------------------------------------------------

    def launch_url(self, rec: SessionRecord, open_path: str | None = None) -> str:
        base = self.settings.hub_base_url.rstrip("/") + "/"
        next_path = f"{base}user/{rec.hub_user}/{rec.server_name}/lab/tree/{open_path or rec.open_path}"
        ticket = launch_ticket.issue(self.ticket_key, rec.hub_user, rec.server_name, next_path)
        return f"{self.settings.hub_url.rstrip('/')}{base}hub/login?" + urlencode(
            {"ticket": ticket, "next": next_path}
        )

    @staticmethod
    def _validate(req) -> None:
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

    async def create(self, req: dict) -> tuple[dict, bool]:
        self._validate(req)
        user, ds = req["user"], req["dataset"]
        kind, user_id = user["kind"], str(user["id"])
        rt = self.runtime()
        if kind == "guest" and not rt["guest_access"]:
            raise BridgeError(403, "guest_access_off", "Guest sessions are turned off on this portal.")
        resources = req.get("resources", [])
        notebook_id = req.get("notebook_resource_id")

        to_end: list[str] = []
        async with self.lock:
            mine = [s for s in self.store.sessions(user_id=user_id, statuses=LIVE)
                    if s.user_kind == kind]
            same = [s for s in mine if s.dataset_id == ds["id"]]
            if same:
                rec = same[0]
                fut = self.in_flight.get(rec.id)
            else:
                fut = None
                rec = None
        if rec is not None:
            if fut is not None:
                await asyncio.shield(fut)
                rec = self.store.get(rec.id)
            if rec.status != "ready":
                raise BridgeError(503, "hub_unavailable", rec.message or "The session could not start.")
            return self._answer(rec, notebook_id), False

        if kind == "guest":
            # only new sessions count: going back to a running one is free
            wait = self.rate.check(req.get("client_ip") or "?", rt["guest_rate_limit"])
            if wait:
                raise BridgeError(
                    429, "rate_limited",
                    "Too many launches from your address. Please wait a moment.",
                    retry_after=int(wait) + 1,
                )
        async with self.lock:
            mine = [s for s in self.store.sessions(user_id=user_id, statuses=LIVE)
                    if s.user_kind == kind]
            if any(s.dataset_id == ds["id"] for s in mine):
                # another request for the same dataset won the race: join it
                return await self.create(req)
            counts = self.store.live_counts()
            if kind == "guest":
                # a guest has one session: launching another dataset replaces
                # it (its slot is free at once; it stops in the background)
                to_end = [s.id for s in mine]
                counts["guest"] -= len(to_end)
            total = counts["guest"] + counts["user"]
            if total >= rt["max_sessions"]:
                raise self._full("capacity", "All notebook sessions on this portal are in use.",
                                 total, rt["max_sessions"], self.store.soonest_expiry())
            if kind == "guest" and counts["guest"] >= rt["max_guests"]:
                raise self._full(
                    "guest_capacity",
                    f"All {rt['max_guests']} guest sessions are in use.",
                    counts["guest"], rt["max_guests"], self.store.soonest_expiry("guest"),
                )
            if kind == "user" and len(mine) >= rt["max_sessions_per_user"]:
                raise self._full(
                    "user_limit",
                    f"You already have {len(mine)} notebook sessions open "
                    f"(the limit is {rt['max_sessions_per_user']}). Stop one to open another.",
                    len(mine), rt["max_sessions_per_user"],
                    min(aware(s.expires_at) for s in mine),
                )
            for sid in to_end:
                self.store.update(sid, status="stopping", message="replaced by a new guest session")
            now = utcnow()
            existing_hub_user = next((s.hub_user for s in mine if kind == "user"), None)
            slot = self.pool.take() if (self.pool is not None and kind == "guest") else None
            rec = SessionRecord(
                id=slot.slot_dir if slot else secrets.token_urlsafe(12),
                user_id=user_id,
                user_kind=kind,
                user_name=str(user.get("name") or ""),
                client_ip=str(req.get("client_ip") or ""),
                hub_user=slot.hub_user if slot else (existing_hub_user or hub_user_for(kind, user_id)),
                server_name=slot.server_name if slot else server_slug(ds["id"]),
                from_pool=slot is not None,
                dataset_id=ds["id"],
                dataset_name=str(ds.get("name") or ""),
                dataset_title=str(ds.get("title") or ""),
                dataset_url=str(ds.get("url") or ""),
                status="pending",
                limits={
                    "cpu_percent": rt["cpu_percent"],
                    "memory_limit": rt["memory_limit"],
                    "idle_timeout": rt["idle_timeout"],
                    "timeout": rt["timeout"],
                },
                started_at=now,
                expires_at=now + dt.timedelta(seconds=rt["timeout"]),
            )
            self.store.add(rec)
            fut = asyncio.get_running_loop().create_future()
            self.in_flight[rec.id] = fut
        for sid in to_end:
            asyncio.ensure_future(self.end(sid, "replaced by a new guest session"))
        try:
            await self._start(rec, resources, notebook_id)
            rec = self.store.get(rec.id)
        except BaseException as e:
            if not fut.done():
                fut.set_result(None)
            self.in_flight.pop(rec.id, None)
            await self._cleanup_failed(rec, e)
            raise
        fut.set_result(None)
        self.in_flight.pop(rec.id, None)
        if self.pool is not None:
            self.pool.kick()
        return self._answer(rec, notebook_id), True

    @staticmethod
    def _full(code, message, active: int, limit: int, soonest) -> BridgeError:
        retry = max(1, int((soonest - utcnow()).total_seconds())) if soonest else 60
        return BridgeError(
            429, code, message,
            retry_after=retry,
            max=limit,
            active=active,
            soonest_expires_at=iso(soonest),
        )

    def _answer(self, rec: SessionRecord, notebook_resource_id: str | None) -> dict:
        open_path = rec.open_path
        if notebook_resource_id:
            for nb in rec.notebooks or []:
                if nb.get("resource_id") == notebook_resource_id:
                    open_path = nb["filename"]
        return rec.to_dict(self.launch_url(rec, open_path))

    # -- scratch ------------------------------------------------------------

    def session_dir(self, session_id: str) -> Path:
        return self.sessions_root / session_id

    def _session_uid(self):
        try:
            pw = pwd.getpwnam(self.settings.session_user)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            return None

    def prepare_slot(self, slot_id: str) -> dict:
        """An empty session directory for a pool server: a home of its own
        and an empty, read-only ~/data to be filled at claim."""
        sdir = self.session_dir(slot_id)
        sdir.mkdir(mode=0o711, exist_ok=True)
        local = self.settings.spawner == "local"
        home = sdir / "home"
        home.mkdir(mode=0o700 if local else 0o755, exist_ok=True)
        data_dir = home / "data" if local else sdir / "data"
        data_dir.mkdir(exist_ok=True)
        os.chmod(data_dir, 0o555)
        ids = self._session_uid()
        if ids and local:
            os.chown(home, *ids)
        return {"data_dir": str(data_dir), "home_dir": str(home), "home_seed_dir": str(home)}

    async def prepare_scratch(self, rec_id: str, dataset: dict, resources: list[dict],
                              notebook_resource_id: str | None) -> dict:
        """Download (or reuse) the dataset's files and lay out the session's
        home and data directory. Returns the spawner's user_options paths."""
        specs = [ResourceSpec.from_dict(r) for r in resources]
        fetched = await self.cache.fetch_all(specs, dataset_id=dataset["id"])
        sdir = self.session_dir(rec_id)
        sdir.mkdir(mode=0o711, exist_ok=True)
        local = self.settings.spawner == "local"
        home = sdir / "home"
        home.mkdir(mode=0o700, exist_ok=True)
        data_dir = home / "data" if local else sdir / "data"
        await asyncio.get_running_loop().run_in_executor(None, populate_data_dir, fetched, data_dir)
        files = [
            {"filename": f.filename, "format": f.resource.format, "name": f.resource.name,
             "error": f.error}
            for f in fetched
        ]
        nb = start_here.build_start_here(dataset, files)
        start_here.write_notebook(nb, home / "start_here.ipynb")
        notebooks = []
        for f in fetched:
            if f.path and f.filename and f.filename.lower().endswith(".ipynb"):
                target = home / f.filename
                shutil.copyfile(f.path, target)
                notebooks.append({"resource_id": f.resource.id, "filename": f.filename})
        ids = self._session_uid()
        if ids and local:
            for p in [home, *home.iterdir()]:
                if p.name != "data":
                    os.chown(p, *ids)
        elif not local:
            for p in home.iterdir():
                os.chmod(p, 0o644)
            os.chmod(home, 0o755)
        open_path = "start_here.ipynb"
        for n in notebooks:
            if n["resource_id"] == notebook_resource_id:
                open_path = n["filename"]
        return {
            "data_dir": str(data_dir),
            "home_dir": str(home),
            "home_seed_dir": str(home),
            "cache_keys": [f.cache_key for f in fetched if f.cache_key],
            "notebooks": notebooks,
            "open_path": open_path,
        }

    async def _start(self, rec: SessionRecord, resources, notebook_resource_id) -> None:
        paths = await self.prepare_scratch(
            rec.id,
            {"id": rec.dataset_id, "name": rec.dataset_name, "title": rec.dataset_title,
             "url": rec.dataset_url},
            resources,
            notebook_resource_id,
        )
        self.store.update(
            rec.id, cache_keys=paths["cache_keys"], notebooks=paths["notebooks"],
            open_path=paths["open_path"],
        )
        if rec.from_pool:
            server = await self.hub.server(rec.hub_user, rec.server_name)
            if server and server.get("ready"):
                if self.on_claim is not None:
                    await self.on_claim(rec, paths)
                self.store.update(rec.id, status="ready")
                return
            log.warning("pool server %s/%s is gone; starting afresh", rec.hub_user, rec.server_name)
        options = {
            "session_id": rec.id,
            "dataset_id": rec.dataset_id,
            "dataset_name": rec.dataset_name,
            "expires_at": iso(rec.expires_at),
            "limits": {**rec.limits, "pids": 256},
            "data_dir": paths["data_dir"],
            "home_dir": paths["home_dir"],
            "home_seed_dir": paths["home_seed_dir"],
            "open_path": paths["open_path"],
        }
        await self.spawn(rec.hub_user, rec.server_name, options)
        self.store.update(rec.id, status="ready")

    async def spawn(self, hub_user: str, server_name: str, options: dict) -> None:
        """Create the hub user if needed, start the named server and wait
        until it answers."""
        try:
            await self.hub.ensure_user(hub_user)
            code = await self.hub.start_server(hub_user, server_name, options)
            if code == 400:
                # a stale server of the same name: stop it, then start afresh
                await self.hub.stop_server(hub_user, server_name, remove=True)
                await self._wait_stopped(hub_user, server_name)
                await self.hub.start_server(hub_user, server_name, options)
        except HubError as e:
            raise BridgeError(503, "hub_unavailable", f"The hub refused to start the server: {e.message}")
        except HubUnavailable:
            raise BridgeError(503, "hub_unavailable", "The notebook service is not answering.") from None
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.05
        while time.monotonic() < deadline:
            try:
                server = await self.hub.server(hub_user, server_name)
            except HubUnavailable:
                raise BridgeError(503, "hub_unavailable", "The notebook service is not answering.") from None
            if server and server.get("ready"):
                return
            if server is None or (not server.get("pending") and not server.get("ready")):
                raise BridgeError(503, "hub_unavailable", "The notebook server failed to start.")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise BridgeError(504, "start_timeout", "The notebook server took too long to start.")

    async def _cleanup_failed(self, rec: SessionRecord, error: BaseException) -> None:
        msg = error.message if isinstance(error, BridgeError) else "launch failed"
        log.warning("launch of %s failed: %s", rec.id, error)
        self.store.update(rec.id, status="error", message=msg)
        try:
            await self._teardown(self.store.get(rec.id))
        except Exception:
            log.exception("cleanup after a failed launch of %s", rec.id)
        self.store.update(rec.id, ended_at=utcnow())

    # -- ending -------------------------------------------------------------

    async def end(self, session_id: str, reason: str = "ended") -> SessionRecord | None:
        """Stop the server, delete the scratch and a guest's hub user, keep
        the ended record. Concurrent calls share one teardown."""
        task = self.ending.get(session_id)
        if task is None:
            task = asyncio.ensure_future(self._end(session_id, reason))
            self.ending[session_id] = task
            task.add_done_callback(lambda _t: self.ending.pop(session_id, None))
        return await asyncio.shield(task)

    async def _end(self, session_id: str, reason: str) -> SessionRecord | None:
        rec = self.store.get(session_id)
        if rec is None:
            return None
        if rec.status in ("ended", "error"):
            return rec
        fut = self.in_flight.get(session_id)
        if fut is not None:
            await asyncio.shield(fut)
            rec = self.store.get(session_id)
            if rec.status in ("ended", "error"):
                return rec
        log.info("ending session %s (%s)", session_id, reason)
        if rec.status != "stopping":
            self.store.update(session_id, status="stopping", message=reason)
        await self._teardown(rec)
        return self.store.update(session_id, status="ended", ended_at=utcnow())

    async def _teardown(self, rec: SessionRecord) -> None:
        others = [
            s for s in self.store.sessions(hub_user=rec.hub_user, statuses=LIVE + ("stopping",))
            if s.id != rec.id
        ]
        await self.teardown_server(rec.hub_user, rec.server_name, rec.id,
                                   delete_user=rec.user_kind == "guest" or not others)
        if self.pool is not None:
            self.pool.kick()

    async def teardown_server(self, hub_user: str, server_name: str, slot_id: str,
                              delete_user: bool) -> None:
        """Stop a server, delete its hub user if asked, remove its scratch."""
        try:
            await self.hub.stop_server(hub_user, server_name, remove=True)
            await self._wait_stopped(hub_user, server_name)
            if delete_user:
                await self.hub.delete_user(hub_user)
        except (HubUnavailable, HubError) as e:
            log.warning("hub teardown of %s/%s: %s", hub_user, server_name, e)
        await asyncio.get_running_loop().run_in_executor(None, _rmtree, self.session_dir(slot_id))

    async def _wait_stopped(self, hub_user: str, server_name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = await self.hub.server(hub_user, server_name)
            if server is None or not (server.get("ready") or server.get("pending")):
                return
            await asyncio.sleep(0.2)

    async def recover(self) -> None:
        """At start-up: launches that were in flight when the bridge stopped
        cannot finish; end them. Pool servers are drained and refilled."""
        for rec in self.store.sessions(statuses=("pending", "stopping")):
            self.store.update(rec.id, status="error", message="interrupted by a restart")
            await self._teardown(rec)
            self.store.update(rec.id, status="ended", ended_at=utcnow())
        if self.pool is not None:
            await self.pool.drain()
            self.pool.kick()

    # -- the clock ----------------------------------------------------------

    async def reap(self) -> None:
        now = utcnow()
        for rec in self.store.expired(now):
            await self.end(rec.id, "time is up")
        live = [s for s in self.store.sessions(statuses=("ready",)) if s.limits.get("idle_timeout")]
        idle_users = {}
        if live:
            try:
                idle_users = {u["name"]: u for u in await self.hub.users()}
            except (HubUnavailable, HubError):
                idle_users = {}
        for rec in live:
            idle = rec.limits.get("idle_timeout") or 0
            if idle and rec.hub_user in idle_users:
                server = (idle_users[rec.hub_user].get("servers") or {}).get(rec.server_name)
                if server and server.get("last_activity"):
                    last = dt.datetime.fromisoformat(server["last_activity"].replace("Z", "+00:00"))
                    if (now - last).total_seconds() > idle:
                        await self.end(rec.id, "idle for too long")
        if self.pool is not None:
            self.pool.kick()
        if time.monotonic() - self._last_housekeeping > 60:
            self._last_housekeeping = time.monotonic()
            self.store.purge_ended(now - ENDED_KEPT)
            keep = {k for s in self.store.sessions(statuses=LIVE + ("stopping",))
                    for k in (s.cache_keys or [])}
            await asyncio.get_running_loop().run_in_executor(None, self.cache.evict, keep)


def _rmtree(path: Path) -> None:
    if not path.exists():
        return
    for p in [path, *path.rglob("*")]:
        try:
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o700)
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)
