""""Run when the dataset's data changes": a resource of the dataset was
created or updated (``IResourceController``).

Resources a report published and files saved from sessions carry
``jupyternotebook_origin`` (``report``, ``session``) and never trigger a run,
so a report cannot feed itself. A report whose run is still queued or
running is not queued again.
"""
from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from ckan import model

from . import jobs, publish
from .model import Report

log = logging.getLogger(__name__)

QUIET_ORIGINS = ("report", "session")


def resource_changed(context: Any, resource: dict[str, Any]) -> None:
    if resource.get(publish.ORIGIN) in QUIET_ORIGINS:
        return
    dataset_id = resource.get("package_id")
    if not dataset_id:
        return
    try:
        reports = list(model.Session.execute(
            sa.select(Report).where(Report.dataset_id == dataset_id,
                                    Report.on_data_change.is_(True))
        ).scalars())
        user = model.User.get((context or {}).get("user") or "")
        for report in reports:
            run = jobs.queue_run(report, "data_change",
                                 dict(report.parameters or {}),
                                 requested_by=user.id if user else None)
            log.info("report %s: %s after resource %s changed", report.id,
                     "run queued" if run else "a run is already active",
                     resource.get("id"))
    except Exception:
        model.Session.rollback()
        # the resource is saved already; a report trigger must not turn
        # the upload into an error page
        log.exception("queueing report runs for a change of resource %s "
                      "failed", resource.get("id"))
