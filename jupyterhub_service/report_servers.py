"""A report run's session server: started for the run under a hub user of
its own, and removed with all the run left behind.

The server is a normal session server (``servers``), with the limits and
egress a visitor's session gets now, and never counts against the
visitors' caps. Removing it kills what still runs in it, stops it, deletes
its hub user and removes its home (and with the docker spawner its
container); a run that was forgotten loses its record and results too.
The housekeeping retries removals that failed, forgets results nobody
fetched within ``RESULTS_KEPT``, and removes ``report-*`` hub users that no
run owns.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from .admission import session_limits
from .hub_api import HubError, HubUnavailable
from .report_results import RUNNING
from .servers import StopFailed
from .sessions import PIDS_LIMIT
from .store import aware, iso, utcnow

log = logging.getLogger("bridge.report_servers")

HUB_USER_PREFIX = "report-"
SERVER_NAME = "run"
# a run's results are kept this long when nobody asks for them to go
RESULTS_KEPT = dt.timedelta(days=1)
HOUSEKEEPING_EVERY = 30


async def _no() -> bool:
    return False


class RunServers:
    def __init__(self, sessions, runner, results, tasks: dict):
        """``tasks``: the runs this bridge follows now (``ReportRuns.tasks``),
        which the housekeeping leaves to their task."""
        self.sessions = sessions
        self.db = sessions.db
        self.runner = runner
        self.results = results
        self.tasks = tasks
        self._last_housekeeping = 0.0

    async def owners(self) -> tuple[set[str], set[tuple[str, str]]]:
        """Session directories / container labels and servers of runs not
        yet cleaned up (``Reconciler.other_owners``)."""
        recs = await self.db.runs(uncleaned=True)
        return ({r.session_id for r in recs},
                {(r.hub_user, r.server_name) for r in recs})

    async def start(self, rec, paths: dict) -> None:
        """Spawn the run's server on the home and data ``scratch`` laid out."""
        rt = self.sessions.runtime.current()
        options = {
            "session_id": rec.session_id,
            "dataset_id": rec.dataset_id,
            "dataset_name": "",
            "expires_at": iso(utcnow() + dt.timedelta(seconds=rec.time_limit + 600)),
            "limits": {**session_limits(rt), "pids": PIDS_LIMIT},
            "data_dir": paths["data_dir"],
            "home_dir": paths["home_dir"],
            "home_seed_dir": paths["home_seed_dir"],
            "open_path": rec.notebook,
        }
        await self.sessions.servers.spawn(rec.hub_user, rec.server_name, options)

    async def cleanup(self, run_id: str) -> bool:
        """Kill what runs, stop the server, delete the hub user, remove the
        home (and with the docker spawner the container); True once done.
        A forgotten run's record and results go with it."""
        rec = await self.db.run_get(run_id)
        if rec is None:
            return True
        if rec.cleaned_at is None:
            try:
                await self.runner.kill(rec)
                await self.sessions.servers.release(rec.hub_user, rec.server_name,
                                                    server_taken=_no, user_needed=_no)
            except StopFailed as e:
                log.warning("run %s: %s; will retry", run_id, e)
                return False
            await self.sessions.scratch.remove(rec.session_id)
            self.runner.forget(rec)
            rec = await self.db.run_update(run_id, cleaned_at=utcnow())
            log.info("run %s: server, user and home removed (%s)", run_id, rec.status)
        if rec.forgotten:
            await self.results.remove(run_id)
            await self.db.run_delete(run_id)
        return True

    async def housekeeping(self, force: bool = False) -> None:
        """Retry cleanups that failed, purge results nobody fetched, and
        remove ``report-*`` hub users no run owns."""
        loop = asyncio.get_running_loop()
        if not force and loop.time() - self._last_housekeeping < HOUSEKEEPING_EVERY:
            return
        self._last_housekeeping = loop.time()
        old = utcnow() - RESULTS_KEPT
        for rec in await self.db.runs():
            if rec.id in self.tasks or rec.status == RUNNING:
                continue
            if rec.cleaned_at is None or rec.forgotten:
                await self.cleanup(rec.id)
            elif rec.finished_at and aware(rec.finished_at) < old:
                await self.db.run_update(rec.id, forgotten=True)
                await self.cleanup(rec.id)
        await self._remove_orphan_users()

    async def _remove_orphan_users(self) -> None:
        try:
            users = (await self.sessions.hub.users("active")
                     + await self.sessions.hub.users("inactive"))
        except (HubUnavailable, HubError):
            return
        owned = {r.hub_user for r in await self.db.runs(uncleaned=True)}
        for user in users:
            name = user["name"]
            if not name.startswith(HUB_USER_PREFIX) or name in owned:
                continue

            async def owned_now(name=name) -> bool:
                return name in {r.hub_user for r in await self.db.runs(uncleaned=True)}

            log.warning("removing hub user %s: no report run owns it", name)
            try:
                for server_name in (user.get("servers") or {}) or [SERVER_NAME]:
                    await self.sessions.servers.release(name, server_name,
                                                        server_taken=owned_now,
                                                        user_needed=owned_now)
            except StopFailed as e:
                log.warning("orphan %s: %s", name, e)
