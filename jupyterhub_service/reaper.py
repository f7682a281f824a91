"""The session clock and the housekeeping: sessions end at ``expires_at`` or
when idle too long; teardowns that failed are retried; ended records are
kept a day; the download cache evicts what no live session uses.

``recover`` runs once at start-up, ``reap`` every reaper period.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from .hub_api import HubError, HubUnavailable
from .store import LIVE, utcnow

log = logging.getLogger("bridge.reaper")

ENDED_KEPT = dt.timedelta(days=1)
HOUSEKEEPING_EVERY = 60


class Reaper:
    def __init__(self, sessions):
        self.sessions = sessions
        self.db = sessions.db
        self._last_housekeeping = 0.0
        self._lock = asyncio.Lock()

    async def run_once(self) -> None:
        """One pass; skipped while the previous one still runs."""
        if self._lock.locked():
            return
        async with self._lock:
            try:
                await self.reap()
            except Exception:
                log.exception("reaper pass failed")

    async def recover(self) -> None:
        """At start-up: launches that were in flight when the bridge stopped
        cannot finish; end them. Pool servers are drained and refilled."""
        for rec in await self.db.sessions(statuses=("pending",)):
            await self.db.update(rec.id, status="stopping", message="interrupted by a restart")
        await self.retry_teardowns()
        pool = self.sessions.pool
        if pool is not None:
            await pool.drain()
            pool.kick()

    async def retry_teardowns(self) -> None:
        """Records left ``stopping`` (or failed launches never cleaned) by a
        teardown that failed or a restart: try again."""
        stuck = await self.db.sessions(statuses=("stopping",))
        failed = [r for r in await self.db.sessions(statuses=("error",)) if r.ended_at is None]
        for rec in stuck + failed:
            if rec.id in self.sessions.ending or rec.id in self.sessions.admission.launching:
                continue
            if rec.status == "error":
                await self.db.update(rec.id, status="stopping")
            await self.sessions.end(rec.id, rec.message or "ended")

    async def reap(self) -> None:
        now = utcnow()
        for rec in await self.db.expired(now):
            await self.sessions.end(rec.id, "time is up")
        await self._end_idle(now)
        await self.retry_teardowns()
        if self.sessions.pool is not None:
            self.sessions.pool.kick()
        if time.monotonic() - self._last_housekeeping > HOUSEKEEPING_EVERY:
            self._last_housekeeping = time.monotonic()
            await self.db.purge_ended(now - ENDED_KEPT)
            keep = {k for s in await self.db.sessions(statuses=LIVE + ("stopping",))
                    for k in (s.cache_keys or [])}
            await self.sessions.scratch.evict_cache(keep)

    async def _end_idle(self, now) -> None:
        live = [s for s in await self.db.sessions(statuses=("ready",))
                if s.limits.get("idle_timeout")]
        if not live:
            return
        try:
            users = {u["name"]: u for u in await self.sessions.hub.users()}
        except (HubUnavailable, HubError):
            return
        for rec in live:
            user = users.get(rec.hub_user)
            server = ((user or {}).get("servers") or {}).get(rec.server_name)
            if not (server and server.get("last_activity")):
                continue
            last = dt.datetime.fromisoformat(server["last_activity"].replace("Z", "+00:00"))
            if (now - last).total_seconds() > rec.limits["idle_timeout"]:
                await self.sessions.end(rec.id, "idle for too long")
