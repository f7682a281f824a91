"""The warm pool: ready, unclaimed guest servers, so that a guest launch is
close to one HTTP round trip.

A pool server runs in a fresh, empty slot (its own home and an empty
``~/data``) under a guest hub user of its own. A guest launch takes one under
the sessions lock, links that dataset's files into the slot and hands out the
ticket; the slot then is that guest's session, and is deleted with it. A slot
never serves two visitors, so no file of one dataset is ever seen from
another's session.

The pool holds at most ``pool_size`` servers and never more than the free
guest slots (``max_guests - active guests``) or free session slots. Servers
started with limits other than those now in force are replaced.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from .store import PoolRecord, utcnow

log = logging.getLogger("bridge.pool")

REFILL_QUIET = 5.0


def pool_limits(rt: dict) -> dict:
    return {"cpu_percent": rt["cpu_percent"], "memory_limit": rt["memory_limit"]}


class Pool:
    def __init__(self, sessions, concurrency: int = 4):
        self.sessions = sessions
        self.store = sessions.store
        self.semaphore = asyncio.Semaphore(concurrency)
        self._pass: asyncio.Task | None = None
        self._again = False
        self._last_claim = 0.0

    # -- numbers ------------------------------------------------------------

    def counts(self) -> dict:
        rt = self.sessions.runtime()
        return {"ready": len(self.store.pool("ready")), "size": rt["pool_size"]}

    def target(self) -> int:
        rt = self.sessions.runtime()
        counts = self.store.live_counts()
        free = min(rt["max_guests"] - counts["guest"],
                   rt["max_sessions"] - counts["guest"] - counts["user"])
        return max(0, min(rt["pool_size"], free))

    # -- claiming -----------------------------------------------------------

    def take(self) -> PoolRecord | None:
        """A ready server with the limits now in force, removed from the
        pool; the caller holds the sessions lock."""
        current = pool_limits(self.sessions.runtime())
        for rec in self.store.pool("ready"):
            if rec.limits == current:
                self.store.pool_remove(rec.hub_user)
                self._last_claim = time.monotonic()
                asyncio.get_running_loop().call_later(REFILL_QUIET, self._refill_when_quiet)
                return rec
        return None

    # -- keeping it full ----------------------------------------------------

    def _refill_when_quiet(self) -> None:
        """Refill once claims have stopped for REFILL_QUIET seconds: new
        servers starting during a burst of claims would compete for the CPU
        with the claiming visitors' logins and first page loads."""
        quiet_for = time.monotonic() - self._last_claim
        if quiet_for >= REFILL_QUIET - 0.05:
            self.kick()
        else:
            asyncio.get_running_loop().call_later(REFILL_QUIET - quiet_for, self._refill_when_quiet)

    def settings_changed(self) -> None:
        self.kick()

    def kick(self) -> None:
        """Run a refill pass soon; passes never overlap."""
        if self._pass is not None and not self._pass.done():
            self._again = True
            return
        self._pass = asyncio.ensure_future(self._refill_loop())

    async def _refill_loop(self) -> None:
        while True:
            self._again = False
            try:
                await self.refill()
            except Exception:
                log.exception("pool refill failed")
            if not self._again:
                return

    async def refill(self) -> None:
        current = pool_limits(self.sessions.runtime())
        records = self.store.pool()
        stale = [r for r in records if r.limits != current]
        fresh = [r for r in records if r.limits == current]
        target = self.target()
        # drop the stale, then the surplus (servers still starting last)
        fresh.sort(key=lambda r: (r.status != "ready", r.created_at))
        surplus = fresh[target:] if len(fresh) > target else []
        for rec in stale + surplus:
            if rec.status == "ready":
                await self.discard(rec)
        missing = target - min(len(fresh), target)
        if missing > 0:
            log.info("pool: starting %d server(s) (target %d)", missing, target)
            await asyncio.gather(*(self._start_one(current) for _ in range(missing)))

    async def _start_one(self, limits: dict) -> None:
        async with self.semaphore:
            slot_id = secrets.token_urlsafe(12)
            hub_user = "guest-" + secrets.token_hex(5)
            server = "p-" + secrets.token_hex(5)
            paths = self.sessions.prepare_slot(slot_id)
            self.store.pool_add(PoolRecord(
                hub_user=hub_user, server_name=server, slot_dir=slot_id, status="starting",
                limits=limits, created_at=utcnow(),
            ))
            options = {
                "session_id": slot_id,
                "pool": True,
                "limits": {**limits, "pids": 256},
                "data_dir": paths["data_dir"],
                "home_dir": paths["home_dir"],
                "home_seed_dir": paths["home_seed_dir"],
                "open_path": "start_here.ipynb",
            }
            try:
                await self.sessions.spawn(hub_user, server, options)
            except Exception as e:
                log.warning("pool server %s failed to start: %s", hub_user, e)
                rec = self.store.pool_remove(hub_user)
                if rec is not None:
                    await self._teardown(rec)
                return
            if any(r.hub_user == hub_user for r in self.store.pool()):
                self.store.pool_update(hub_user, status="ready")
            else:
                # discarded while it was starting (a limit changed)
                await self._teardown(PoolRecord(hub_user=hub_user, server_name=server,
                                                slot_dir=slot_id, status="gone", limits=limits,
                                                created_at=utcnow()))

    async def discard(self, rec: PoolRecord) -> None:
        if self.store.pool_remove(rec.hub_user) is not None:
            await self._teardown(rec)

    async def _teardown(self, rec: PoolRecord) -> None:
        await self.sessions.teardown_server(rec.hub_user, rec.server_name, rec.slot_dir,
                                            delete_user=True)

    async def drain(self) -> None:
        """Stop every pool server (at start-up: none survives a restart)."""
        for rec in self.store.pool():
            self.store.pool_remove(rec.hub_user)
            await self._teardown(rec)
