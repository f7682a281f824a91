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

from .servers import StopFailed
from .store import PoolRecord, new_session_id, utcnow

log = logging.getLogger("bridge.pool")

REFILL_QUIET = 5.0


def pool_limits(rt: dict) -> dict:
    """What a pool server is started with; a server whose limits differ from
    the settings now in force is replaced."""
    return {k: rt[k] for k in ("cpu_percent", "memory_limit", "disk_limit", "session_egress")}


class Pool:
    def __init__(self, sessions, concurrency: int = 4):
        self.sessions = sessions
        self.db = sessions.db
        self.semaphore = asyncio.Semaphore(concurrency)
        self._pass: asyncio.Task | None = None
        self._again = False
        self._last_claim = 0.0

    # -- numbers ------------------------------------------------------------

    async def counts(self) -> dict:
        rt = self.sessions.runtime.current()
        return {"ready": len(await self.db.pool("ready")), "size": rt["pool_size"]}

    async def target(self) -> int:
        rt = self.sessions.runtime.current()
        counts = await self.db.live_counts()
        # sessions still stopping hold a place under the host's cap
        free = min(rt["max_guests"] - counts["guest"],
                   rt["max_sessions"] - counts["guest"] - counts["user"] - counts["stopping"])
        return max(0, min(rt["pool_size"], free))

    # -- claiming -----------------------------------------------------------

    async def take(self) -> PoolRecord | None:
        """A ready server with the limits now in force, removed from the
        pool; the caller holds the admission lock."""
        current = pool_limits(self.sessions.runtime.current())
        for rec in await self.db.pool("ready"):
            if rec.limits == current:
                await self.db.pool_remove(rec.hub_user)
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
        current = pool_limits(self.sessions.runtime.current())
        records = await self.db.pool()
        stale = [r for r in records if r.limits != current]
        fresh = [r for r in records if r.limits == current]
        target = await self.target()
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
            slot_id = new_session_id()
            hub_user = "guest-" + secrets.token_hex(5)
            server = "p-" + secrets.token_hex(5)
            # the record first, under the admission lock: the reconciler
            # takes whatever it finds without an owner for an orphan
            async with self.sessions.admission.lock:
                await self.db.pool_add(PoolRecord(
                    hub_user=hub_user, server_name=server, slot_dir=slot_id, status="starting",
                    limits=limits, created_at=utcnow(),
                ))
            try:
                await self._spawn(slot_id, hub_user, server, limits)
            except Exception as e:
                log.warning("pool server %s failed to start: %s", hub_user, e)
                rec = await self.db.pool_remove(hub_user)
                if rec is not None:
                    await self._teardown(rec)
                return
            if any(r.hub_user == hub_user for r in await self.db.pool()):
                await self.db.pool_update(hub_user, status="ready")
            else:
                # discarded while it was starting (a limit changed)
                await self._teardown(PoolRecord(hub_user=hub_user, server_name=server,
                                                slot_dir=slot_id, status="gone", limits=limits,
                                                created_at=utcnow()))

    async def _spawn(self, slot_id: str, hub_user: str, server: str, limits: dict) -> None:
        """An empty slot, and a server in it."""
        loop = asyncio.get_running_loop()
        paths = await loop.run_in_executor(None, self.sessions.scratch.prepare_slot, slot_id)
        options = {
            "session_id": slot_id,
            "pool": True,
            "limits": {**limits, "pids": 256},
            "data_dir": paths["data_dir"],
            "home_dir": paths["home_dir"],
            "home_seed_dir": paths["home_seed_dir"],
            "open_path": "start_here.ipynb",
        }
        await self.sessions.servers.spawn(hub_user, server, options)

    async def discard(self, rec: PoolRecord) -> None:
        if await self.db.pool_remove(rec.hub_user) is not None:
            await self._teardown(rec)

    async def _teardown(self, rec: PoolRecord) -> None:
        try:
            await self.sessions.teardown_server(rec.hub_user, rec.server_name, rec.slot_dir)
        except StopFailed as e:
            log.warning("pool server %s: %s", rec.hub_user, e)

    async def drain(self) -> None:
        """Stop every pool server (at start-up: none survives a restart)."""
        for rec in await self.db.pool():
            await self.db.pool_remove(rec.hub_user)
            await self._teardown(rec)
