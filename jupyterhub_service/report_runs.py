"""Report runs: a notebook executed headless in a session of its own.

A run is a normal session server (``scratch`` lays out its home and its
read-only ``~/data``, ``servers`` starts it with the limits and egress a
visitor's session gets now), under a hub user of its own
(``report-<random>``). It never counts against the visitors' caps and never
takes a pool slot. Once the server answers, papermill runs in it
(``report_exec``); the executed notebook and the files in ``./output/`` are
copied out into the run's results directory, and the server, its hub user,
its home and its container are removed at once, whatever the outcome.

The bridge owns the clock: a run still executing ``time_limit`` seconds
after papermill started is killed (``timed_out``). ``DELETE`` cancels a run
that still runs and forgets one that ended (CKAN's worker calls it once it
has fetched the results). Every step is in the run's record, so a restarted
bridge follows the runs that still execute, fails those whose server is
gone, and removes what the others left.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import secrets
import shutil
from pathlib import Path

import nbformat

from . import report_params
from .admission import session_limits
from .errors import BridgeError
from .hub_api import HubError, HubUnavailable
from .report_exec import NOTEBOOK_FILE, DockerRunner, LocalRunner, safe_artifact_name
from .servers import StopFailed
from .session_home import open_dir, write_file, home_uid
from .sessions import PIDS_LIMIT
from .settings import parse_bytes
from .store import ReportRunRecord, iso, utcnow

log = logging.getLogger("bridge.report_runs")

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
RUNNING = "running"
ENDED = ("succeeded", "failed", "timed_out", "cancelled")
MAX_TIME_LIMIT = 24 * 3600
HUB_USER_PREFIX = "report-"
SERVER_NAME = "run"
# a run's results are kept this long when nobody asks for them to go
RESULTS_KEPT = dt.timedelta(days=1)
HOUSEKEEPING_EVERY = 30
DELETE_WAIT = 180  # a server start (120 s) and its stop


def _error(ename: str, evalue: str) -> dict:
    return {"ename": ename, "evalue": evalue, "traceback": [], "cell_index": None}


def validate_request(req) -> None:
    def bad(msg):
        raise BridgeError(400, "invalid", msg)

    if not isinstance(req, dict):
        bad("the body must be a JSON object")
    if not isinstance(req.get("run_id"), str) or not RUN_ID.match(req["run_id"]):
        bad("run_id must be 1-100 letters, digits, '.', '_' or '-'")
    user = req.get("user")
    if not isinstance(user, dict) or user.get("kind") != "user" or not user.get("id"):
        bad("user must be {kind: user, id, name}: runs are a publisher's")
    ds = req.get("dataset")
    if not isinstance(ds, dict) or not ds.get("id"):
        bad("dataset must be {id, name, title, url}")
    res = req.get("resources")
    if not isinstance(res, list) or not all(isinstance(r, dict) and r.get("id") for r in res):
        bad("resources must be a list of {id, name, format, fetch_url, ...}")
    nb = req.get("notebook_resource_id")
    if not nb or nb not in {r["id"] for r in res}:
        bad("notebook_resource_id must name one of the resources")
    limit = req.get("time_limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_TIME_LIMIT:
        bad(f"time_limit must be a whole number of seconds from 1 to {MAX_TIME_LIMIT}")


class ReportRuns:
    def __init__(self, sessions):
        self.sessions = sessions
        self.settings = sessions.settings
        self.db = sessions.db
        self.results_root = self.settings.storage_root / "report-runs"
        self.results_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.results_root, 0o700)
        local = self.settings.spawner == "local"
        self.runner = LocalRunner(sessions.scratch) if local else DockerRunner()
        self.tasks: dict[str, asyncio.Task] = {}
        self.wake: dict[str, asyncio.Event] = {}
        self._last_housekeeping = 0.0

    def results(self, run_id: str) -> Path:
        return self.results_root / run_id

    def cap(self) -> int:
        return parse_bytes(self.settings.max_resource_size)

    # -- what reconcile must leave alone ------------------------------------

    async def owners(self) -> tuple[set[str], set[tuple[str, str]]]:
        """Session directories / container labels and servers of runs not
        yet cleaned up (``Reconciler.other_owners``)."""
        recs = await self.db.runs(uncleaned=True)
        return ({r.session_id for r in recs},
                {(r.hub_user, r.server_name) for r in recs})

    # -- start --------------------------------------------------------------

    async def create(self, req) -> tuple[dict, int]:
        """(the run, 202) for a new run, (the run, 200) for one of that id."""
        validate_request(req)
        parameters = report_params.validate(req.get("parameters"))
        existing = await self.db.run_get(req["run_id"])
        if existing is not None:
            return existing.to_dict(), 200
        now = utcnow()
        rec = ReportRunRecord(
            id=req["run_id"], session_id="run-" + secrets.token_hex(8),
            hub_user=HUB_USER_PREFIX + secrets.token_hex(6), server_name=SERVER_NAME,
            user_id=str(req["user"]["id"]), dataset_id=str(req["dataset"]["id"]),
            parameters=parameters, time_limit=req["time_limit"], status=RUNNING,
            started_at=now, artifacts=[],
        )
        # the record first: reconcile must see an owner of the directory
        if not await self.db.run_add(rec):
            return (await self.db.run_get(rec.id)).to_dict(), 200
        try:
            paths = await self.sessions.scratch.prepare(
                rec.session_id, req["dataset"], req["resources"], req["notebook_resource_id"])
            notebook = next((n["filename"] for n in paths["notebooks"]
                             if n["resource_id"] == req["notebook_resource_id"]), None)
            if notebook is None:
                raise BridgeError(422, "notebook_unavailable",
                                  "The notebook could not be fetched (see the dataset's files).")
            papermill_params = await asyncio.get_running_loop().run_in_executor(
                None, self._parameterize, rec.session_id, notebook, parameters)
        except BaseException:
            await self.sessions.scratch.remove(rec.session_id)
            await self.db.run_delete(rec.id)
            raise
        rec = await self.db.run_update(rec.id, notebook=notebook, parameters=parameters)
        self._start_task(rec.id, self._run(rec.id, paths, papermill_params))
        return rec.to_dict(), 202

    def _parameterize(self, session_id: str, notebook: str, parameters: dict) -> dict:
        """Rewrite the home's copy of the notebook for its ``# @param``
        lines; return what papermill injects. Runs before the server
        starts, so the home holds only what the bridge wrote."""
        home = self.sessions.scratch.path(session_id) / "home"
        home_fd = open_dir(home)
        try:
            fd = os.open(notebook, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=home_fd)
            with os.fdopen(fd, "rb") as f:
                text = f.read().decode("utf-8", errors="replace")
        finally:
            os.close(home_fd)
        try:
            nb = nbformat.reads(text, as_version=4)
        except Exception as e:
            raise BridgeError(422, "invalid_notebook",
                              f"The notebook cannot be read as a notebook: {e}") from None
        if not parameters:
            return {}
        nb, applied = report_params.apply_colab(nb, parameters)
        if applied:
            uid = home_uid(home) if self.settings.spawner == "local" else None
            write_file(home, notebook, data=nbformat.writes(nb).encode(), owner=uid)
        return report_params.papermill_parameters(parameters, applied)

    def _start_task(self, run_id: str, coro) -> None:
        self.wake[run_id] = asyncio.Event()
        task = asyncio.ensure_future(coro)
        self.tasks[run_id] = task

        def done(_t):
            self.tasks.pop(run_id, None)
            self.wake.pop(run_id, None)

        task.add_done_callback(done)

    async def _run(self, run_id: str, paths: dict, papermill_params: dict) -> None:
        rec = await self.db.run_get(run_id)
        try:
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
            if (await self.db.run_get(run_id)).status != RUNNING:
                return  # cancelled while the server started
            config = {"input": rec.notebook, "parameters": papermill_params}
            handle = await self.runner.start(rec, config)
            await self.db.run_update(run_id, exec_handle=handle, exec_started_at=utcnow())
            log.info("run %s: papermill started in %s/%s", run_id, rec.hub_user, rec.server_name)
            await self._follow(run_id)
        except BridgeError as e:
            await self._end(run_id, "failed", message=e.message,
                            error=_error("ReportRunError", e.message))
        except Exception as e:
            log.exception("run %s failed", run_id)
            await self._end(run_id, "failed", message="the run could not be executed",
                            error=_error(type(e).__name__, str(e)))
        finally:
            await self._cleanup(run_id)

    async def _follow(self, run_id: str) -> None:
        """Until papermill ends, the run is cancelled or its time is up."""
        rec = await self.db.run_get(run_id)
        deadline = _aware(rec.exec_started_at) + dt.timedelta(seconds=rec.time_limit)
        step = 0.05
        while True:
            rec = await self.db.run_get(run_id)
            if rec is None or rec.status != RUNNING:
                return
            if await self.runner.finished(rec):
                break
            left = (deadline - dt.datetime.now(dt.timezone.utc)).total_seconds()
            if left <= 0:
                log.info("run %s: past its time limit of %ss", run_id, rec.time_limit)
                await self._end(run_id, "timed_out",
                                message=f"The run took longer than its limit of {rec.time_limit} s.")
                return
            wake = self.wake.get(run_id)
            try:
                await asyncio.wait_for(wake.wait() if wake else asyncio.sleep(step),
                                       min(step, left))
            except asyncio.TimeoutError:
                pass
            step = min(step * 1.5, 0.5)
        await self._collect(rec)

    async def _collect(self, rec) -> None:
        dest = self.results(rec.id)
        await asyncio.get_running_loop().run_in_executor(None, _fresh_dir, dest)
        got = await self.runner.collect(rec, dest, self.cap())
        result = got.result if isinstance(got.result, dict) else None
        if result is None:
            await self._end(rec.id, "failed", artifacts=got.artifacts,
                            message="papermill ended without a result",
                            error=_error("ReportRunError",
                                         "papermill ended without a result (the kernel or the "
                                         "runner was killed, or the session ran out of memory)"))
        elif result.get("status") == "succeeded":
            await self._end(rec.id, "succeeded", artifacts=got.artifacts, error=None,
                            message="" if got.notebook else "the executed notebook is too large")
        else:
            error = result.get("error") if isinstance(result.get("error"), dict) else {}
            await self._end(rec.id, "failed", artifacts=got.artifacts, message="the notebook failed",
                            error={"ename": str(error.get("ename") or "Error"),
                                   "evalue": str(error.get("evalue") or ""),
                                   "traceback": [str(t) for t in error.get("traceback") or []][:200],
                                   "cell_index": error.get("cell_index")
                                   if isinstance(error.get("cell_index"), int) else None})

    async def _end(self, run_id: str, status: str, **values) -> None:
        await self.db.run_update(run_id, only_if_status=RUNNING, status=status,
                                 finished_at=utcnow(), **values)

    # -- end ----------------------------------------------------------------

    async def _cleanup(self, run_id: str) -> bool:
        """Kill what runs, stop the server, delete the hub user, remove the
        home (and with the docker spawner the container); True once done.
        A forgotten run's record and results go with it."""
        rec = await self.db.run_get(run_id)
        if rec is None:
            return True
        if rec.cleaned_at is None:
            async def no() -> bool:
                return False

            try:
                await self.runner.kill(rec)
                await self.sessions.servers.release(rec.hub_user, rec.server_name,
                                                    server_taken=no, user_needed=no)
            except StopFailed as e:
                log.warning("run %s: %s; will retry", run_id, e)
                return False
            await self.sessions.scratch.remove(rec.session_id)
            self.runner.forget(rec)
            rec = await self.db.run_update(run_id, cleaned_at=utcnow())
            log.info("run %s: server, user and home removed (%s)", run_id, rec.status)
        if rec.forgotten:
            await asyncio.get_running_loop().run_in_executor(
                None, shutil.rmtree, self.results(run_id), True)
            await self.db.run_delete(run_id)
        return True

    async def delete(self, run_id: str) -> None:
        """Cancel a run that still runs, and forget it: 204 once nothing of
        it is left."""
        rec = await self.db.run_get(run_id)
        if rec is None:
            raise BridgeError(404, "not_found", "No such run.")
        await self.db.run_update(run_id, forgotten=True)
        if rec.status == RUNNING:
            await self._end(run_id, "cancelled", message="cancelled")
        wake = self.wake.get(run_id)
        if wake is not None:
            wake.set()
        task = self.tasks.get(run_id)
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), DELETE_WAIT)
            except asyncio.TimeoutError:
                raise BridgeError(503, "hub_unavailable",
                                  "The run is still being stopped; it will be removed.") from None
        done = await self._cleanup(run_id)
        if not done or await self.db.run_get(run_id) is not None:
            raise BridgeError(503, "hub_unavailable",
                              "The run's server could not be removed yet; it will be retried.")

    # -- reads --------------------------------------------------------------

    async def get(self, run_id: str) -> ReportRunRecord:
        rec = await self.db.run_get(run_id)
        if rec is None or rec.forgotten:
            raise BridgeError(404, "not_found", "No such run.")
        return rec

    async def notebook_path(self, run_id: str) -> Path:
        rec = await self.get(run_id)
        path = self.results(run_id) / NOTEBOOK_FILE
        if rec.status == RUNNING or not path.is_file():
            raise BridgeError(404, "not_found", "The run has no executed notebook (yet).")
        return path

    async def artifact_path(self, run_id: str, name: str) -> Path:
        rec = await self.get(run_id)
        listed = {a["name"] for a in rec.artifacts or [] if not a.get("skipped")}
        if not safe_artifact_name(name) or name not in listed:
            raise BridgeError(404, "not_found", "The run has no such artifact.")
        return self.results(run_id) / "artifacts" / name

    # -- restarts and housekeeping -----------------------------------------

    async def resume(self) -> None:
        """After a restart: follow the runs still executing, fail those
        whose server is gone or that never got to papermill, clean up the
        rest."""
        for rec in await self.db.runs(statuses=(RUNNING,)):
            if rec.id in self.tasks:
                continue
            server = None
            try:
                server = await self.sessions.hub.server(rec.hub_user, rec.server_name)
            except (HubUnavailable, HubError) as e:
                log.warning("run %s: cannot ask the hub (%s); the next pass will", rec.id, e)
                continue
            if not rec.exec_handle:
                await self._end(rec.id, "failed", message="interrupted by a restart",
                                error=_error("ReportRunError",
                                             "the notebook service restarted while the run's "
                                             "server was starting"))
            elif not (server and server.get("ready")):
                await self._end(rec.id, "failed", message="the run's server stopped",
                                error=_error("ReportRunError",
                                             "the run's notebook server stopped (a restart of "
                                             "the notebook service) before the notebook ended"))
            else:
                log.info("run %s: following it again after a restart", rec.id)
                self._start_task(rec.id, self._resumed(rec.id))
                continue
            self._start_task(rec.id, self._cleanup(rec.id))
        await self.housekeeping(force=True)

    async def _resumed(self, run_id: str) -> None:
        try:
            await self._follow(run_id)
        except Exception as e:
            log.exception("run %s failed", run_id)
            await self._end(run_id, "failed", message="the run could not be followed",
                            error=_error(type(e).__name__, str(e)))
        finally:
            await self._cleanup(run_id)

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
                await self._cleanup(rec.id)
            elif rec.finished_at and _aware(rec.finished_at) < old:
                await self.db.run_update(rec.id, forgotten=True)
                await self._cleanup(rec.id)
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

            async def no() -> bool:
                return False

            log.warning("removing hub user %s: no report run owns it", name)
            try:
                for server_name in (user.get("servers") or {}) or [SERVER_NAME]:
                    await self.sessions.servers.release(name, server_name,
                                                        server_taken=owned_now,
                                                        user_needed=owned_now)
            except StopFailed as e:
                log.warning("orphan %s: %s", name, e)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True)

