"""The session clock and the housekeeping: sessions end at ``expires_at`` or
when idle too long; the records are reconciled with what really runs
(``reconcile``); teardowns that failed are retried; ended records are kept
a day; the download cache evicts what no live session uses.

``recover`` runs once at start-up before the API serves, ``after_start``
right after it, ``reap`` every reaper period.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from .reconcile import Reconciler, end_sessions
from .sessions import EXPIRED
from .store import LIVE, STOPPING, utcnow

log = logging.getLogger("bridge.reaper")

ENDED_KEPT = dt.timedelta(days=1)
HOUSEKEEPING_EVERY = 60


def last_activity(server: dict) -> dt.datetime | None:
    value = server.get("last_activity")
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class Reaper:
    def __init__(self, sessions, remove_engine_orphans=None):
        self.sessions = sessions
        self.db = sessions.db
        self.reconciler = Reconciler(sessions, remove_engine_orphans)
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

    # -- start-up -----------------------------------------------------------

    async def recover(self) -> None:
        """Before the API serves: launches that were in flight when the
        bridge stopped cannot finish, and sessions whose server a hub restart
        stopped are over. Both end now, so that the caps count only what
        runs and nobody is sent to a dead server."""
        for rec in await self.db.sessions(statuses=("pending",)):
            await self.db.update(rec.id, status=STOPPING, message="interrupted by a restart")
        ready, users = await self.reconciler.look()
        if users is None:
            return  # the reaper's passes will
        ended = await self.reconciler.end_gone(ready, users)
        log.info("recovered: %d session(s) had lost their server", ended)

    async def after_start(self) -> None:
        """Once serving: pool servers are drained and refilled, whatever no
        record owns is removed, failed teardowns are retried."""
        async with self._lock:
            try:
                pool = self.sessions.pool
                if pool is not None:
                    await pool.drain()
                await self.reconciler.run(sweep_idle_users=True)
                await self.retry_teardowns()
            except Exception:
                log.exception("start-up housekeeping failed")
        if self.sessions.pool is not None:
            self.sessions.pool.kick()

    # -- every pass ---------------------------------------------------------

    async def reap(self) -> None:
        now = utcnow()
        await end_sessions(self.sessions, await self.db.expired(now), EXPIRED)
        ready, users = await self.reconciler.look()
        await self.reconciler.run(ready, users)
        if users is not None:
            await self._end_idle(now, ready, users)
        await self.retry_teardowns()
        # two small queries when there is nothing to do: every pass, so that
        # a workspace lets go of an ended holder at once
        await self.sessions.workspaces.reap(now)
        if self.sessions.pool is not None:
            self.sessions.pool.kick()
        if time.monotonic() - self._last_housekeeping > HOUSEKEEPING_EVERY:
            self._last_housekeeping = time.monotonic()
            await self._housekeeping(now)

    async def retry_teardowns(self) -> None:
        """Records left ``stopping`` (or failed launches never cleaned) by a
        teardown that failed or a restart: try again."""
        stuck = await self.db.sessions(statuses=(STOPPING,))
        failed = [r for r in await self.db.sessions(statuses=("error",)) if r.ended_at is None]
        busy = set(self.sessions.ending) | set(self.sessions.admission.launching)
        retry = [r for r in stuck + failed if r.id not in busy]
        for rec in retry:
            if rec.status == "error":
                await self.db.update(rec.id, status=STOPPING)
        await end_sessions(self.sessions, retry, "")

    async def _end_idle(self, now: dt.datetime, ready: list, users: list[dict]) -> None:
        """End ready sessions whose server has been idle longer than the
        session's ``idle_timeout``, by the hub's ``last_activity`` (ended
        ones among ``ready`` are left as they are by ``end``)."""
        servers = {(u["name"], name): server for u in users
                   for name, server in (u.get("servers") or {}).items()}
        idle = []
        for rec in ready:
            limit = rec.limits.get("idle_timeout")
            server = servers.get((rec.hub_user, rec.server_name))
            if not (limit and server and server.get("ready")):
                continue
            last = last_activity(server)
            if last is not None and (now - last).total_seconds() > limit:
                idle.append(rec)
        await end_sessions(self.sessions, idle, "idle for too long")

    async def _housekeeping(self, now: dt.datetime) -> None:
        await self.db.purge_ended(now - ENDED_KEPT)
        keep = {k for s in await self.db.sessions(statuses=LIVE + (STOPPING,))
                for k in (s.cache_keys or [])}
        await self.sessions.scratch.evict_cache(keep)
