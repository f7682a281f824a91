"""The report tables, created by the plugin's migrations
(``ckan db upgrade -p jupyternotebook``).

Written with SQLAlchemy's classic ``Column`` declarations and 2.0-style
``select``/``update``, which SQLAlchemy 1.4 (CKAN 2.10, 2.11) and 2.0
(CKAN 2.12) both read the same way.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa

import ckan.plugins.toolkit as tk
from ckan import model

#: a run that has not ended; at most one per report (a partial unique index)
ACTIVE = ("queued", "running")
ENDED = ("succeeded", "failed", "timed_out", "cancelled")
TRIGGERS = ("manual", "schedule", "data_change")


def _uuid() -> str:
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat().replace(
        "+00:00", "Z")


class Report(tk.BaseModel):
    __tablename__ = "jupyternotebook_report"

    id = sa.Column(sa.UnicodeText, primary_key=True, default=_uuid)
    resource_id = sa.Column(sa.UnicodeText, nullable=False, index=True)
    dataset_id = sa.Column(sa.UnicodeText, nullable=False, index=True)
    parameters = sa.Column(sa.JSON, nullable=False, default=dict)
    schedule = sa.Column(sa.UnicodeText, nullable=True)
    timezone = sa.Column(sa.UnicodeText, nullable=False, default="UTC")
    on_data_change = sa.Column(sa.Boolean, nullable=False, default=False)
    time_limit = sa.Column(sa.Integer, nullable=False, default=600)
    next_run_at = sa.Column(sa.DateTime(timezone=True), nullable=True,
                            index=True)
    created_by = sa.Column(sa.UnicodeText, nullable=False)
    created_at = sa.Column(sa.DateTime(timezone=True), nullable=False,
                           default=utcnow)
    updated_at = sa.Column(sa.DateTime(timezone=True), nullable=False,
                           default=utcnow, onupdate=utcnow)

    @classmethod
    def get(cls, report_id: str) -> "Report | None":
        if not report_id:
            return None
        return model.Session.get(cls, report_id)

    @classmethod
    def for_dataset(cls, dataset_id: str) -> list["Report"]:
        return list(model.Session.execute(
            sa.select(cls).where(cls.dataset_id == dataset_id)
            .order_by(cls.created_at)).scalars())

    @classmethod
    def for_resource(cls, resource_id: str) -> "Report | None":
        return model.Session.execute(
            sa.select(cls).where(cls.resource_id == resource_id)
            .order_by(cls.created_at)).scalars().first()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource_id": self.resource_id,
            "dataset_id": self.dataset_id,
            "parameters": dict(self.parameters or {}),
            "schedule": self.schedule,
            "timezone": self.timezone,
            "on_data_change": bool(self.on_data_change),
            "time_limit": self.time_limit,
            "next_run_at": _iso(self.next_run_at),
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
        }


class ReportRun(tk.BaseModel):
    __tablename__ = "jupyternotebook_report_run"

    id = sa.Column(sa.UnicodeText, primary_key=True, default=_uuid)
    report_id = sa.Column(
        sa.UnicodeText,
        sa.ForeignKey("jupyternotebook_report.id", ondelete="CASCADE"),
        nullable=False, index=True)
    trigger = sa.Column(sa.UnicodeText, nullable=False)
    parameters = sa.Column(sa.JSON, nullable=False, default=dict)
    status = sa.Column(sa.UnicodeText, nullable=False, default="queued")
    queued_at = sa.Column(sa.DateTime(timezone=True), nullable=False,
                          default=utcnow)
    started_at = sa.Column(sa.DateTime(timezone=True), nullable=True)
    finished_at = sa.Column(sa.DateTime(timezone=True), nullable=True)
    # {message, ename, evalue, traceback, cell_index} of a run that failed
    error = sa.Column(sa.JSON, nullable=True)
    # resource ids the run published
    published = sa.Column(sa.JSON, nullable=False, default=list)
    requested_by = sa.Column(sa.UnicodeText, nullable=True)
    job_id = sa.Column(sa.UnicodeText, nullable=True)

    __table_args__ = (
        # never two runs of one report at once, whoever starts them
        sa.Index("jupyternotebook_report_run_one_active", "report_id",
                 unique=True,
                 postgresql_where=sa.text("status IN ('queued', 'running')")),
    )

    @classmethod
    def get(cls, run_id: str) -> "ReportRun | None":
        if not run_id:
            return None
        return model.Session.get(cls, run_id)

    @classmethod
    def for_report(cls, report_id: str, limit: int = 100) -> list["ReportRun"]:
        return list(model.Session.execute(
            sa.select(cls).where(cls.report_id == report_id)
            .order_by(cls.queued_at.desc()).limit(limit)).scalars())

    @classmethod
    def active_for(cls, report_id: str) -> "ReportRun | None":
        return model.Session.execute(
            sa.select(cls).where(cls.report_id == report_id,
                                 cls.status.in_(ACTIVE))).scalars().first()

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        start = self.started_at
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.timezone.utc)
        if end.tzinfo is None:
            end = end.replace(tzinfo=dt.timezone.utc)
        return max(0.0, (end - start).total_seconds())

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "report_id": self.report_id,
            "trigger": self.trigger,
            "parameters": dict(self.parameters or {}),
            "status": self.status,
            "queued_at": _iso(self.queued_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "error": self.error,
            "published": list(self.published or []),
            "duration": self.duration,
        }


def transition(run_id: str, to: str, *, only_from: tuple[str, ...],
               **values: Any) -> bool:
    """Move a run to status ``to`` if it is in one of ``only_from``, in one
    atomic UPDATE (a cancel and a worker finishing at once: one of them
    wins). Commits; True when this call made the change."""
    result = model.Session.execute(
        sa.update(ReportRun)
        .where(ReportRun.id == run_id, ReportRun.status.in_(only_from))
        .values(status=to, **values)
        .execution_options(synchronize_session=False))
    model.Session.commit()
    # CKAN's session keeps objects after a commit: reload the changed run
    model.Session.expire_all()
    return result.rowcount == 1


def report_or_not_found(report_id) -> Report:
    """The report, or ObjectNotFound (for the actions and their auth)."""
    report = Report.get(report_id or "")
    if report is None:
        raise tk.ObjectNotFound(tk._("Report not found"))
    return report


def run_or_not_found(run_id) -> ReportRun:
    """The run, or ObjectNotFound (for the actions and their auth)."""
    run = ReportRun.get(run_id or "")
    if run is None:
        raise tk.ObjectNotFound(tk._("Report run not found"))
    return run
