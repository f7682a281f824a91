"""The records against what really exists: the hub's servers and users, the
session directories and, with a container spawner, the engine's containers.

- A session recorded ``ready`` whose server the hub no longer has (a hub
  restart stopped it, it crashed) is ended: its slot is freed, and the same
  visitor clicking again gets a new session instead of a dead one.
- A server, a hub user (``guest-*``, ``ckan-*``), a session directory or a
  container that no record owns (a lost record, a crash between two steps)
  is stopped and removed.

Owners are the session records that may still hold something
(``Store.owning_sessions``), the pool's records and the launches in flight.
They are read after the hub, the disk and the engine were looked at, under
the admission lock: a launch writes its record before it creates a user, a
directory or a server, and the pool writes its record before its slot, so
whatever was created in between already has its owner on record.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .hub_api import HubError, HubUnavailable
from .servers import StopFailed
from .store import LIVE, STOPPING

log = logging.getLogger("bridge.reconcile")

SESSION_USER_PREFIXES = ("guest-", "ckan-")
# teardowns of sessions whose server is gone run this many at a time
ENDING_AT_ONCE = 8


@dataclass
class Owners:
    session_ids: set[str]  # records' ids and pool slots: directories, container labels
    servers: set[tuple[str, str]]  # (hub user, server name)
    hub_users: set[str]


def owns_resources(rec) -> bool:
    """A record whose server, directory or container may still exist."""
    return rec.status in LIVE + (STOPPING,) or (rec.status == "error" and rec.ended_at is None)


async def end_sessions(sessions, records: list, reason: str) -> None:
    """End these sessions, ``ENDING_AT_ONCE`` teardowns at a time: a
    thousand expiring together must not take a thousand stop round trips
    one after the other."""
    at_once = asyncio.Semaphore(ENDING_AT_ONCE)

    async def end(rec):
        async with at_once:
            await sessions.end(rec.id, reason or rec.message or "ended")

    await asyncio.gather(*(end(r) for r in records))


def active_servers(users: list[dict]) -> set[tuple[str, str]]:
    """(hub user, server name) of every server the hub lists as ready or
    pending."""
    return {(u["name"], name) for u in users for name in (u.get("servers") or {})}


class Reconciler:
    def __init__(self, sessions, remove_engine_orphans=None):
        self.sessions = sessions
        self.db = sessions.db
        # container spawners: ``remove_engine_orphans(known_session_ids)``
        # removes containers, services and volumes of other sessions and
        # returns what it removed (blocking; run on a worker thread)
        self.remove_engine_orphans = remove_engine_orphans
        # owners besides the session records and the pool (report runs):
        # each ``await owner()`` -> (session ids, {(hub user, server name)})
        self.other_owners = []

    async def look(self) -> tuple[list, list[dict] | None]:
        """The sessions recorded ready, then the hub's active users (None
        when the hub does not answer). In this order: a session ready
        before the hub was asked had its server listed, unless it is gone."""
        ready = await self.db.sessions(statuses=("ready",))
        try:
            return ready, await self.sessions.hub.users("active")
        except (HubUnavailable, HubError) as e:
            log.warning("cannot list the hub's servers (%s)", e)
            return ready, None

    async def run(self, ready: list | None = None, users: list[dict] | None = None,
                  sweep_idle_users: bool = False) -> None:
        """One pass. ``ready`` and ``users``: what ``look()`` answered, when
        the caller has looked already; ``sweep_idle_users``: also delete
        session hub users without any server that no record owns (at
        start-up)."""
        if ready is None:
            ready, users = await self.look()
        idle_users = []
        if users is not None and sweep_idle_users:
            try:
                idle_users = await self.sessions.hub.users("inactive")
            except (HubUnavailable, HubError) as e:
                log.warning("cannot list the hub's users without servers (%s)", e)
        loop = asyncio.get_running_loop()
        dirs = await loop.run_in_executor(None, self.sessions.scratch.session_ids)
        owners = await self.owners()
        if users is not None:
            await self.end_gone(ready, users)
            await self.remove_orphan_servers(users + idle_users, owners)
        await self.remove_orphan_dirs(dirs, owners)
        await self.remove_orphan_containers()

    async def end_gone(self, ready: list, users: list[dict]) -> int:
        """End sessions recorded ready (read before ``users`` was listed)
        whose server the hub no longer has."""
        active = active_servers(users)
        busy = set(self.sessions.admission.launching) | set(self.sessions.ending)
        gone = [r for r in ready
                if (r.hub_user, r.server_name) not in active and r.id not in busy]
        if not gone:
            return 0
        log.warning("%d session(s) recorded ready have no server in the hub; ending them",
                    len(gone))
        await end_sessions(self.sessions, gone, "the notebook server stopped")
        return len(gone)

    async def owners(self) -> Owners:
        """Who owns what now; under the admission lock, so that no launch
        is half-recorded."""
        async with self.sessions.admission.lock:
            return await self._owners_now()

    async def _owners_now(self) -> Owners:
        records = await self.db.owning_sessions()
        pool = await self.db.pool()
        ids = ({r.id for r in records} | {p.slot_dir for p in pool}
               | set(self.sessions.admission.launching) | set(self.sessions.ending))
        servers = ({(r.hub_user, r.server_name) for r in records}
                   | {(p.hub_user, p.server_name) for p in pool})
        for owner in self.other_owners:
            more_ids, more_servers = await owner()
            ids |= more_ids
            servers |= more_servers
        return Owners(ids, servers, {user for user, _ in servers})

    async def _still_owned(self, hub_user: str, server_name: str | None = None) -> bool:
        """Asked again just before removing: a launch may have claimed the
        user (or the server name) since ``owners`` was read."""
        def match(rec):
            return server_name is None or rec.server_name == server_name

        if any(owns_resources(r) and match(r) for r in await self.db.sessions(hub_user=hub_user)):
            return True
        return any(p.hub_user == hub_user and match(p) for p in await self.db.pool())

    async def remove_orphan_servers(self, users: list[dict], owners: Owners) -> None:
        """Stop servers of session hub users that no record owns, and delete
        those users when no record owns them at all."""
        for user in users:
            name = user["name"]
            if not name.startswith(SESSION_USER_PREFIXES):
                continue
            orphans = [s for s in (user.get("servers") or {}) if (name, s) not in owners.servers]
            if not orphans and name in owners.hub_users:
                continue
            try:
                await self._remove_orphan_user(name, orphans)
            except StopFailed as e:
                log.warning("orphan %s: %s; next pass retries", name, e)

    async def _remove_orphan_user(self, hub_user: str, orphan_servers: list[str]) -> None:
        """Stop the user's servers that no record owns, then delete the
        user unless a record owns it (the hub refuses to delete a user with
        a server still running, so the user goes with the last server)."""
        async def yes() -> bool:
            return True

        async def user_owned() -> bool:
            return await self._still_owned(hub_user)

        for server_name in orphan_servers[:-1]:
            log.warning("stopping %s/%s: no session owns it", hub_user, server_name)
            await self.sessions.servers.release(
                hub_user, server_name, server_taken=self._server_owned(hub_user, server_name),
                user_needed=yes)
        last = orphan_servers[-1] if orphan_servers else None
        log.warning("removing %s%s: no session owns it", hub_user, f"/{last}" if last else "")
        await self.sessions.servers.release(
            hub_user, last or "",
            server_taken=self._server_owned(hub_user, last) if last else yes,
            user_needed=user_owned)

    def _server_owned(self, hub_user: str, server_name: str):
        async def owned() -> bool:
            return await self._still_owned(hub_user, server_name)

        return owned

    async def remove_orphan_dirs(self, dirs: set[str], owners: Owners) -> None:
        """Session directories (listed before ``owners`` was read) that no
        record, pool slot or launch owns."""
        for session_id in sorted(dirs - owners.session_ids):
            log.warning("removing session directory %s: no session owns it", session_id)
            await self.sessions.scratch.remove(session_id)

    async def remove_orphan_containers(self) -> None:
        """Container spawners: containers, services and volumes whose
        session label no owner carries. The admission lock is held while the
        engine is listed, so no launch can start a container whose record
        the list of owners missed."""
        if self.remove_engine_orphans is None:
            return
        loop = asyncio.get_running_loop()
        async with self.sessions.admission.lock:
            known = (await self._owners_now()).session_ids
            try:
                removed = await loop.run_in_executor(None, self.remove_engine_orphans, known)
            except Exception as e:  # the engine is down or refused: next pass
                log.warning("removing orphan containers failed: %s", e)
                return
        if removed:
            log.warning("removed orphans from the engine: %s", ", ".join(removed))
