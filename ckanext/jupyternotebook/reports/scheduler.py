"""``ckan jupyter scheduler``: fires report schedules kept in the database.

Any number of scheduler processes may run. Each tick locks the due reports
with ``SELECT ... FOR UPDATE SKIP LOCKED``, moves their ``next_run_at`` to
the next period after *now* and records a run, in one transaction: a
period fires once whichever process sees it first, and periods missed while
everything was down collapse into one run on resume. A report with a run
still queued or running skips the period (the partial unique index on
runs is the last word on "never two at once").

Each tick also ends runs that can no longer end by themselves: their job
was lost (a worker killed, Redis emptied) or ran far past its deadline.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

import ckan.plugins.toolkit as tk
from ckan import model

from . import jobs, schedule
from .model import ACTIVE, Report, ReportRun, transition, utcnow

log = logging.getLogger(__name__)

#: a queued run whose job RQ does not know gets this long to appear
LOST_JOB_GRACE = 60


def fire_due(now: dt.datetime | None = None, batch: int = 100) -> list[str]:
    """Queue a run of every report whose schedule is due; returns the ids
    of the runs queued by this call."""
    now = now or utcnow()
    due = model.Session.execute(
        sa.select(Report)
        .where(Report.schedule.isnot(None), Report.next_run_at.isnot(None),
               Report.next_run_at <= now)
        .order_by(Report.next_run_at).limit(batch)
        .with_for_update(skip_locked=True)).scalars().all()
    queued: list[tuple[str, int]] = []
    for report in due:
        try:
            report.next_run_at = schedule.next_after(
                report.schedule, report.timezone, now)
        except (schedule.InvalidSchedule, ValueError) as err:
            log.error("report %s: schedule %r cannot fire (%s); turned off",
                      report.id, report.schedule, err)
            report.next_run_at = None
            continue
        run = ReportRun(report_id=report.id, trigger="schedule",
                        parameters=dict(report.parameters or {}),
                        status="queued", requested_by=None, published=[],
                        queued_at=now)
        try:
            with model.Session.begin_nested():
                model.Session.add(run)
        except IntegrityError:
            log.info("report %s: a run is still queued or running; this "
                     "period is skipped", report.id)
            continue
        queued.append((run.id, report.time_limit))
    model.Session.commit()
    for run_id, time_limit in queued:
        jobs.enqueue(run_id, time_limit)
    if queued:
        log.info("scheduler queued %d report run(s)", len(queued))
    return [run_id for run_id, _ in queued]


def end_lost_runs(now: dt.datetime | None = None) -> list[str]:
    """Fail runs whose job is gone; returns their ids."""
    now = now or utcnow()
    rows = model.Session.execute(
        sa.select(ReportRun, Report.time_limit)
        .join(Report, Report.id == ReportRun.report_id)
        .where(ReportRun.status.in_(ACTIVE))).all()
    model.Session.commit()
    ended = []
    for run, time_limit in rows:
        since = run.started_at or run.queued_at
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.timezone.utc)
        age = (now - since).total_seconds()
        if run.status == "queued":
            lost = age > LOST_JOB_GRACE and not jobs.job_alive(run.job_id)
        else:
            lost = age > time_limit + jobs.MARGIN + LOST_JOB_GRACE \
                or (age > LOST_JOB_GRACE and not jobs.job_alive(run.job_id))
        if not lost:
            continue
        if transition(run.id, "failed", only_from=(run.status,),
                      finished_at=now, error={"message": tk._(
                          "The background job of this run was lost (a "
                          "worker stopped, or the queue was emptied)")}):
            log.warning("report run %s: job lost, marked failed", run.id)
            jobs.forget_bridge_run(run.id)
            ended.append(run.id)
    return ended


def tick() -> list[str]:
    try:
        fired = fire_due()
    except Exception:
        model.Session.rollback()
        raise
    try:
        end_lost_runs()
    except Exception:
        model.Session.rollback()
        log.exception("checking for lost report runs failed")
    return fired


def run_forever(interval: float,
                should_stop: Callable[[], bool] = lambda: False) -> None:
    log.info("report scheduler started (every %.1f s)", interval)
    while not should_stop():
        started = time.monotonic()
        try:
            tick()
        except Exception:
            log.exception("report scheduler tick failed; trying again")
        finally:
            model.Session.remove()
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
