"""How a report run ended, as its run history shows it: the status, the
error in words for the report page, and what it published."""
from __future__ import annotations

import logging
import re
from typing import Any

import sqlalchemy as sa

import ckan.plugins.toolkit as tk
from ckan import model

from .model import ReportRun, transition, utcnow

log = logging.getLogger(__name__)

#: terminal colour codes in IPython tracebacks
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class RunFailed(Exception):
    """The run cannot go on; ``message`` is for the run history."""

    def __init__(self, message: str, status: str = "failed",
                 **details: Any):
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details


class Cancelled(RunFailed):
    def __init__(self):
        super().__init__(tk._("Cancelled"), status="cancelled")


def finish(run_id: str, status: str, error: dict | None = None,
           published: list | None = None) -> None:
    """End a running run in the history; a run cancelled meanwhile keeps
    its status but lists what was published."""
    changed = transition(run_id, status, only_from=("running",),
                         finished_at=utcnow(), error=error,
                         published=list(published or []))
    if changed:
        log.info("report run %s: %s", run_id, status)
    elif published:
        # cancelled while publishing: what was published stays listed
        model.Session.execute(
            sa.update(ReportRun).where(ReportRun.id == run_id)
            .values(published=list(published))
            .execution_options(synchronize_session=False))
        model.Session.commit()


def error_of(final: dict, time_limit: int) -> dict:
    """The history's error for a bridge run that did not succeed."""
    status = final.get("status")
    error = dict(final.get("error") or {})
    if status == "timed_out":
        error.setdefault("message", tk._(
            "The notebook ran longer than its time limit of {limit} s; it "
            "was stopped and its server removed").format(limit=time_limit))
    elif status == "cancelled":
        error.setdefault("message", tk._("Cancelled"))
    elif error.get("ename"):
        cell = error.get("cell_index")
        where = tk._(" in cell {n}").format(n=cell) \
            if cell is not None else ""
        error.setdefault("message", tk._(
            "The notebook failed{where}: {ename}: {evalue}").format(
                where=where, ename=error.get("ename"),
                evalue=error.get("evalue") or ""))
    elif final.get("message"):
        error.setdefault("message", final["message"])
    else:
        error.setdefault("message", tk._("The notebook run failed"))
    tb = error.get("traceback")
    if isinstance(tb, list):
        tb = "\n".join(str(line) for line in tb)
    if isinstance(tb, str):
        error["traceback"] = ANSI_ESCAPE.sub("", tb)
    return error
