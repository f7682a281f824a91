"""A report run as a CKAN background job (RQ queue ``jupyter-reports``).

The job runs as the report's publisher: their rights are checked when it
runs, not when the report was set up, and it stops with a clear error when
they are gone. It asks the bridge to run the notebook in a session of its
own (``POST /api/runs``), waits for the end, and on success publishes the
executed notebook and each artifact as resources of the dataset
(``publish``), as new uploads of the same resources on later runs. A
failed, timed-out or cancelled run publishes nothing. How the run ended goes
into its history (``history``). Whatever happens, the bridge's run is
deleted at the end (its server, container and home go with it).
"""
from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

import ckan.plugins.toolkit as tk
from ckan import model

from .. import hub_client
from .history import Cancelled, RunFailed, error_of, finish
from .model import Report, ReportRun, transition, utcnow
from .publish import REPORT_ID, Publication, report_stem

log = logging.getLogger(__name__)

QUEUE = "jupyter-reports"
#: beyond the time limit: the server's start, fetching and publishing
MARGIN = 300
POLL_SECONDS = 1.0
#: how long the bridge may stay unreachable during a run
BRIDGE_PATIENCE = 60


# --------------------------------------------------------------------------
# queueing


def queue_run(report: Report, trigger: str, parameters: dict[str, Any],
              requested_by: str | None = None) -> ReportRun | None:
    """Record a queued run and enqueue its job; None when a run of this
    report is already queued or running."""
    run = ReportRun(report_id=report.id, trigger=trigger,
                    parameters=dict(parameters or {}), status="queued",
                    requested_by=requested_by, published=[],
                    queued_at=utcnow())
    model.Session.add(run)
    try:
        model.Session.commit()
    except IntegrityError:
        model.Session.rollback()
        return None
    enqueue(run.id, report.time_limit)
    model.Session.expire_all()
    return ReportRun.get(run.id)


def enqueue(run_id: str, time_limit: int) -> None:
    """Put a queued run's job on the queue; a run that cannot be queued
    fails with the reason."""
    try:
        job = tk.enqueue_job(run_report, [run_id], title=f"report run {run_id}",
                             queue=QUEUE,
                             rq_kwargs={"timeout": time_limit + MARGIN})
    except Exception as err:  # Redis down: the run must not stay queued
        log.exception("could not enqueue report run %s", run_id)
        transition(run_id, "failed", only_from=("queued",),
                   finished_at=utcnow(), error={"message": tk._(
                       "The run could not be queued: background jobs are "
                       "unavailable ({error})").format(error=err)})
        return
    model.Session.execute(
        sa.update(ReportRun).where(ReportRun.id == run_id)
        .values(job_id=job.id).execution_options(synchronize_session=False))
    model.Session.commit()


def cancel_job(job_id: str | None) -> None:
    """Take a queued job off the queue (a running one ends on its own when
    it sees its run cancelled)."""
    if not job_id:
        return
    from ckan.lib import jobs as ckan_jobs
    try:
        job = ckan_jobs.job_from_id(job_id)
    except KeyError:
        return
    try:
        if job.get_status() in ("queued", "deferred", "scheduled"):
            job.cancel()
    except Exception:  # best effort: the job checks the run's status
        log.warning("could not cancel job %s", job_id, exc_info=True)


def job_alive(job_id: str | None) -> bool:
    """Whether RQ still holds this job as queued or started."""
    if not job_id:
        return False
    from ckan.lib import jobs as ckan_jobs
    try:
        job = ckan_jobs.job_from_id(job_id)
    except KeyError:
        return False
    try:
        return job.get_status() in ("queued", "started", "deferred",
                                    "scheduled")
    except Exception:
        return False


# --------------------------------------------------------------------------
# the job


def run_report(run_id: str) -> None:
    """The background job: run one report run to its end."""
    from flask import has_request_context
    if has_request_context():
        _Run(run_id).execute()
        return
    # the CLI's app (the worker's) keeps a request context for code outside
    # requests, e.g. url_for with the site URL; CKAN lines without it work
    # without one
    from ckan.config import middleware
    context = getattr(middleware, "_internal_test_request_context", None)
    if context is None:
        _Run(run_id).execute()
        return
    with context:
        _Run(run_id).execute()


# --------------------------------------------------------------------------
# who runs it


def _publisher(report: Report) -> tuple[dict, Any]:
    """The context the run acts in, as the report's publisher, and their
    user; RunFailed once their account is gone."""
    user = model.User.get(report.created_by)
    if user is None or user.state != "active":
        raise RunFailed(tk._(
            "The report's publisher no longer has an active account; "
            "set the report up again as a user who may edit the "
            "dataset"))
    return {"user": user.name, "ignore_auth": False}, user


def _check_rights(report: Report, context: dict,
                  user: Any) -> tuple[dict, dict]:
    """The notebook resource and its dataset, when the publisher may still
    read the one and edit the other; RunFailed saying why not."""
    try:
        notebook = tk.get_action("resource_show")(
            dict(context), {"id": report.resource_id})
        dataset = tk.get_action("package_show")(
            dict(context), {"id": notebook["package_id"]})
    except tk.ObjectNotFound:
        # no use firing the schedule again: paused until the report is
        # saved again
        model.Session.execute(
            sa.update(Report).where(Report.id == report.id)
            .values(next_run_at=None)
            .execution_options(synchronize_session=False))
        model.Session.commit()
        raise RunFailed(tk._(
            "The notebook resource of this report was removed; its "
            "schedule is paused"))
    except tk.NotAuthorized:
        raise RunFailed(tk._(
            "The report's publisher {user} may no longer read this "
            "notebook (was the dataset made private, or were they "
            "removed from its organization?)").format(user=user.name))
    try:
        tk.check_access("resource_update", dict(context),
                        {"id": report.resource_id})
    except tk.NotAuthorized:
        raise RunFailed(tk._(
            "The report's publisher {user} may no longer edit this "
            "dataset, so the run cannot publish its results").format(
                user=user.name))
    return notebook, dataset


class _Run:
    def __init__(self, run_id: str):
        self.run_id = run_id
        self.client = hub_client.HubClient.from_config()
        self.started_bridge_run = False

    # -- the whole run ---------------------------------------------------

    def execute(self) -> None:
        run = ReportRun.get(self.run_id)
        if run is None or run.status != "queued":
            return  # cancelled while queued, or the report was deleted
        report = Report.get(run.report_id)
        if report is None:
            return
        self.report_id = report.id
        self.time_limit = report.time_limit
        self.parameters = dict(run.parameters or {})
        if not transition(self.run_id, "running", only_from=("queued",),
                          started_at=utcnow()):
            return
        log.info("report %s run %s started", report.id, self.run_id)
        try:
            outcome = self._run(report)
        except RunFailed as err:
            finish(self.run_id, err.status,
                   error={"message": err.message, **err.details})
        except Exception as err:
            if type(err).__name__ == "JobTimeoutException":
                finish(self.run_id, "timed_out", error={"message": tk._(
                    "The run took longer than its time limit of {limit} s "
                    "and was stopped").format(limit=self.time_limit)})
            else:
                log.exception("report run %s failed", self.run_id)
                finish(self.run_id, "failed", error={"message": tk._(
                    "The run stopped on an internal error: {error}").format(
                        error=f"{type(err).__name__}: {err}")})
        else:
            finish(self.run_id, *outcome)
        finally:
            forget_bridge_run(self.run_id, self.client)

    def _run(self, report: Report) -> tuple:
        context, user = _publisher(report)
        notebook, dataset = _check_rights(report, context, user)
        stem = report_stem(notebook)
        request = self._request(context, user, dataset, notebook)
        self._check_not_cancelled()
        try:
            self.client.create_run(request)
        except hub_client.HubUnavailable as err:
            raise RunFailed(tk._(
                "The notebook service could not start the run: {message}"
            ).format(message=err.message))
        except hub_client.BridgeError as err:
            # invalid_parameters, notebook_unavailable, invalid_notebook:
            # the bridge's message says which and why
            raise RunFailed(tk._(
                "The notebook service refused the run: {message}").format(
                    message=err.message), code=err.code)
        self.started_bridge_run = True
        final = self._wait()
        status = final.get("status")
        if status != "succeeded":
            return status, error_of(final, self.time_limit), []
        # the publisher's rights again: the run may have taken long
        context, user = _publisher(report)
        notebook, dataset = _check_rights(report, context, user)
        self._check_not_cancelled()
        publication = Publication(self.client, self.run_id, self.report_id,
                                  stem, context, dataset, notebook)
        return "succeeded", None, publication.publish(final)

    def _request(self, context: dict, user: Any, dataset: dict,
                 notebook: dict) -> dict:
        from ..logic.action import _resource_entry

        readable = []
        for resource in dataset.get("resources", []):
            if resource.get(REPORT_ID) == self.report_id:
                continue  # its own previous results are not its input
            try:
                tk.check_access("resource_show", dict(context),
                                {"id": resource["id"]})
            except tk.NotAuthorized:
                continue
            if resource.get("url_type") == "upload" or resource.get("url"):
                readable.append(_resource_entry(dataset, resource))
        return {
            "run_id": self.run_id,
            "user": {"kind": "user", "id": user.id, "name": user.name},
            "dataset": {
                "id": dataset["id"], "name": dataset["name"],
                "title": dataset.get("title") or dataset["name"],
                "url": tk.url_for("dataset.read", id=dataset["name"],
                                  _external=True),
            },
            "resources": readable,
            "notebook_resource_id": notebook["id"],
            "parameters": self.parameters,
            "time_limit": self.time_limit,
        }

    # -- waiting -----------------------------------------------------------

    def _status_in_db(self) -> str | None:
        model.Session.commit()  # end the transaction: see others' commits
        return model.Session.execute(
            sa.select(ReportRun.status).where(ReportRun.id == self.run_id)
        ).scalar()

    def _check_not_cancelled(self) -> None:
        if self._status_in_db() != "running":
            raise Cancelled()

    def _wait(self) -> dict:
        # the bridge kills the run at its time limit; this deadline only
        # covers a bridge that never says so
        deadline = time.monotonic() + self.time_limit + MARGIN / 2
        unreachable_since = None
        while True:
            if self._status_in_db() != "running":
                return {"status": "cancelled"}
            try:
                info = self.client.get_run(self.run_id)
                unreachable_since = None
            except hub_client.NotFound:
                raise RunFailed(tk._(
                    "The notebook service lost this run (was it "
                    "restarted?)"))
            except hub_client.HubUnavailable:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > BRIDGE_PATIENCE:
                    raise RunFailed(tk._(
                        "The notebook service stopped answering during "
                        "the run"))
                info = {}
            if info.get("status") in ("succeeded", "failed", "timed_out",
                                      "cancelled"):
                return info
            if time.monotonic() > deadline:
                return {"status": "timed_out"}
            time.sleep(POLL_SECONDS)


def forget_bridge_run(run_id: str,
                      client: hub_client.HubClient | None = None) -> None:
    """Stop the bridge's run if it still runs, and remove what is left of it
    (its server, container, home, results); a run the bridge does not know
    is fine."""
    client = client or hub_client.HubClient.from_config()
    try:
        client.delete_run(run_id)
    except hub_client.NotFound:
        pass
    except hub_client.BridgeError as err:
        log.warning("report run %s: the bridge did not remove the run now "
                    "(%s); it retries by itself", run_id, err)
