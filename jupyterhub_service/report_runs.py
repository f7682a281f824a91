"""Report runs: a notebook executed headless in a session of its own.

A run is a normal session server (``scratch`` lays out its home and its
read-only ``~/data``, ``report_servers`` starts it), under a hub user of its
own (``report-<random>``). It never counts against the visitors' caps and
never takes a pool slot. Once the server answers, papermill runs in it
(``report_exec``); the executed notebook and the files in ``./output/`` are
copied out into the run's results directory (``report_results``), and the
server, its hub user, its home and its container are removed at once,
whatever the outcome.

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
from pathlib import Path

import nbformat

from . import report_params
from .errors import BridgeError
from .hub_api import HubError, HubUnavailable
from .report_exec import DockerRunner, LocalRunner
from .report_results import RUNNING, RunResults, run_error
from .report_servers import HUB_USER_PREFIX, SERVER_NAME, RunServers
from .session_home import open_dir, write_file, home_uid
from .store import ReportRunRecord, aware, utcnow

log = logging.getLogger("bridge.report_runs")

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_TIME_LIMIT = 24 * 3600
DELETE_WAIT = 180  # a server start (120 s) and its stop


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
        local = self.settings.spawner == "local"
        self.runner = LocalRunner(sessions.scratch) if local else DockerRunner()
        self.results = RunResults(self.settings, self.runner)
        self.tasks: dict[str, asyncio.Task] = {}
        self.wake: dict[str, asyncio.Event] = {}
        self.servers = RunServers(sessions, self.runner, self.results, self.tasks)

    # -- start --------------------------------------------------------------

    async def create(self, req) -> tuple[dict, int]:
        """(the run, 202) for a new run, (the run, 200) for one of that id."""
        validate_request(req)
        parameters = report_params.validate(req.get("parameters"))
        existing = await self.db.run_get(req["run_id"])
        if existing is not None:
            return existing.to_dict(), 200
        rec = _new_record(req, parameters)
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
                None, _parameterize, self.sessions.scratch.path(rec.session_id) / "home",
                notebook, parameters, self.settings.spawner == "local")
        except BaseException:
            await self.sessions.scratch.remove(rec.session_id)
            await self.db.run_delete(rec.id)
            raise
        rec = await self.db.run_update(rec.id, notebook=notebook, parameters=parameters)
        self._start_task(rec.id, self._run(rec.id, paths, papermill_params))
        return rec.to_dict(), 202

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
            await self.servers.start(rec, paths)
            if (await self.db.run_get(run_id)).status != RUNNING:
                return  # cancelled while the server started
            config = {"input": rec.notebook, "parameters": papermill_params}
            handle = await self.runner.start(rec, config)
            await self.db.run_update(run_id, exec_handle=handle, exec_started_at=utcnow())
            log.info("run %s: papermill started in %s/%s", run_id, rec.hub_user, rec.server_name)
            await self._follow(run_id)
        except BridgeError as e:
            await self._end(run_id, "failed", message=e.message,
                            error=run_error("ReportRunError", e.message))
        except Exception as e:
            log.exception("run %s failed", run_id)
            await self._end(run_id, "failed", message="the run could not be executed",
                            error=run_error(type(e).__name__, str(e)))
        finally:
            await self.servers.cleanup(run_id)

    async def _follow(self, run_id: str) -> None:
        """Until papermill ends, the run is cancelled or its time is up."""
        rec = await self.db.run_get(run_id)
        deadline = aware(rec.exec_started_at) + dt.timedelta(seconds=rec.time_limit)
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
        status, values = await self.results.collect(rec)
        await self._end(rec.id, status, **values)

    async def _end(self, run_id: str, status: str, **values) -> None:
        await self.db.run_update(run_id, only_if_status=RUNNING, status=status,
                                 finished_at=utcnow(), **values)

    # -- end ----------------------------------------------------------------

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
        done = await self.servers.cleanup(run_id)
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
        return self.results.notebook(await self.get(run_id))

    async def artifact_path(self, run_id: str, name: str) -> Path:
        return self.results.artifact(await self.get(run_id), name)

    # -- restarts -----------------------------------------------------------

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
                                error=run_error("ReportRunError",
                                                "the notebook service restarted while the run's "
                                                "server was starting"))
            elif not (server and server.get("ready")):
                await self._end(rec.id, "failed", message="the run's server stopped",
                                error=run_error("ReportRunError",
                                                "the run's notebook server stopped (a restart of "
                                                "the notebook service) before the notebook ended"))
            else:
                log.info("run %s: following it again after a restart", rec.id)
                self._start_task(rec.id, self._resumed(rec.id))
                continue
            self._start_task(rec.id, self.servers.cleanup(rec.id))
        await self.servers.housekeeping(force=True)

    async def _resumed(self, run_id: str) -> None:
        try:
            await self._follow(run_id)
        except Exception as e:
            log.exception("run %s failed", run_id)
            await self._end(run_id, "failed", message="the run could not be followed",
                            error=run_error(type(e).__name__, str(e)))
        finally:
            await self.servers.cleanup(run_id)


def _new_record(req: dict, parameters: dict) -> ReportRunRecord:
    """A new run's record: a session directory, hub user and server of its own."""
    return ReportRunRecord(
        id=req["run_id"], session_id="run-" + secrets.token_hex(8),
        hub_user=HUB_USER_PREFIX + secrets.token_hex(6), server_name=SERVER_NAME,
        user_id=str(req["user"]["id"]), dataset_id=str(req["dataset"]["id"]),
        parameters=parameters, time_limit=req["time_limit"], status=RUNNING,
        started_at=utcnow(), artifacts=[],
    )


def _parameterize(home: Path, notebook: str, parameters: dict, local: bool) -> dict:
    """Rewrite the home's copy of the notebook for its ``# @param`` lines;
    return what papermill injects. Runs before the server starts, so the
    home holds only what the bridge wrote."""
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
        uid = home_uid(home) if local else None
        write_file(home, notebook, data=nbformat.writes(nb).encode(), owner=uid)
    return report_params.papermill_parameters(parameters, applied)

