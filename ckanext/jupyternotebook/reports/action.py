"""The report actions (issue 14). Writes check access like an update of the
notebook's resource, reads like showing it."""
from __future__ import annotations

import logging
from typing import Any

import ckan.plugins.toolkit as tk
from ckan import model
from ckan.logic import validate
from ckan.types import Context, DataDict

from .. import preview
from . import jobs, schedule, schema
from .model import (ACTIVE, Report, ReportRun, report_or_not_found, run_or_not_found,
                    transition, utcnow)

log = logging.getLogger(__name__)

__all__ = [
    "jupyternotebook_report_create",
    "jupyternotebook_report_update",
    "jupyternotebook_report_delete",
    "jupyternotebook_report_show",
    "jupyternotebook_report_list",
    "jupyternotebook_report_execute",
    "jupyternotebook_report_run_show",
    "jupyternotebook_report_run_list",
    "jupyternotebook_report_run_cancel",
]


def _caller_id(context: Context) -> str:
    user = context.get("auth_user_obj") or model.User.get(
        context.get("user") or "")
    if user is None:
        raise tk.NotAuthorized(tk._("Log in to set up reports"))
    return user.id


def _next_run(report: Report) -> None:
    report.next_run_at = schedule.next_after(
        report.schedule, report.timezone, utcnow()) if report.schedule \
        else None


@validate(schema.report_create)
def jupyternotebook_report_create(context: Context,
                                  data_dict: DataDict) -> dict[str, Any]:
    """Set up a notebook resource as a report.

    :param resource_id: the ``.ipynb`` resource
    :type resource_id: string
    :param parameters: values for the notebook's ``parameters`` cell and
        ``# @param`` lines (a JSON object of scalars; optional)
    :type parameters: dictionary
    :param schedule: a five-field cron expression (optional)
    :type schedule: string
    :param timezone: the schedule's IANA time zone (default ``UTC``)
    :type timezone: string
    :param on_data_change: run when a resource of the dataset is created
        or updated (default false)
    :type on_data_change: bool
    :param time_limit: seconds a run may take (default 600)
    :type time_limit: int

    :returns: the report
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_report_create", context, data_dict)
    resource = tk.get_action("resource_show")(
        _inner(context), {"id": data_dict["resource_id"]})
    if not preview.is_notebook_resource(resource):
        raise tk.ValidationError({"resource_id": [tk._(
            "Only notebook (.ipynb) resources can be set up as reports")]})
    existing = Report.for_resource(resource["id"])
    if existing is not None:
        raise tk.ValidationError({"resource_id": [tk._(
            "This notebook is already set up as report {id}; change that "
            "one instead").format(id=existing.id)]})
    report = Report(
        resource_id=resource["id"], dataset_id=resource["package_id"],
        parameters=data_dict.get("parameters") or {},
        schedule=data_dict.get("schedule"),
        timezone=data_dict.get("timezone") or "UTC",
        on_data_change=bool(data_dict.get("on_data_change", False)),
        time_limit=data_dict.get("time_limit") or schema.DEFAULT_TIME_LIMIT,
        created_by=_caller_id(context))
    _next_run(report)
    model.Session.add(report)
    model.Session.commit()
    log.info("report %s set up on notebook %s", report.id, report.resource_id)
    return report.as_dict()


@validate(schema.report_update)
def jupyternotebook_report_update(context: Context,
                                  data_dict: DataDict) -> dict[str, Any]:
    """Change a report; fields not given keep their values.

    :param id: the report
    :type id: string

    Other parameters as ``jupyternotebook_report_create`` (but not
    ``resource_id``).

    :returns: the report
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_report_update", context, data_dict)
    report = report_or_not_found(data_dict["id"])
    for field in ("parameters", "schedule", "timezone", "on_data_change",
                  "time_limit"):
        if field in data_dict:
            setattr(report, field, data_dict[field])
    if not report.timezone:
        report.timezone = "UTC"
    _next_run(report)
    model.Session.commit()
    return report.as_dict()


@validate(schema.by_id)
def jupyternotebook_report_delete(context: Context,
                                  data_dict: DataDict) -> None:
    """Remove a report and its run history; what it published stays.

    :param id: the report
    :type id: string
    """
    tk.check_access("jupyternotebook_report_delete", context, data_dict)
    report = report_or_not_found(data_dict["id"])
    active = ReportRun.active_for(report.id)
    if active is not None:
        _cancel(active, tk._("The report was deleted"))
    model.Session.delete(report)
    model.Session.commit()


@tk.side_effect_free
@validate(schema.by_id)
def jupyternotebook_report_show(context: Context,
                                data_dict: DataDict) -> dict[str, Any]:
    """A report.

    :param id: the report
    :type id: string
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_report_show", context, data_dict)
    return report_or_not_found(data_dict["id"]).as_dict()


@tk.side_effect_free
@validate(schema.report_list)
def jupyternotebook_report_list(context: Context,
                                data_dict: DataDict) -> list[dict[str, Any]]:
    """The reports of a dataset whose notebooks the caller may see.

    :param dataset_id: the dataset's id or name
    :type dataset_id: string
    :rtype: list of dictionaries
    """
    tk.check_access("jupyternotebook_report_list", context, data_dict)
    dataset = model.Package.get(data_dict["dataset_id"])
    if dataset is None:
        raise tk.ObjectNotFound(tk._("Dataset not found"))
    found = []
    for report in Report.for_dataset(dataset.id):
        try:
            tk.check_access("resource_show", _inner(context),
                            {"id": report.resource_id})
        except (tk.NotAuthorized, tk.ObjectNotFound):
            continue
        found.append(report.as_dict())
    return found


@validate(schema.report_execute)
def jupyternotebook_report_execute(context: Context,
                                   data_dict: DataDict) -> dict[str, Any]:
    """Run a report now (queued as a background job).

    :param id: the report
    :type id: string
    :param parameters: values for this run only, over the saved ones
        (optional)
    :type parameters: dictionary

    :returns: the run
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_report_execute", context, data_dict)
    report = report_or_not_found(data_dict["id"])
    parameters = {**(report.parameters or {}),
                  **(data_dict.get("parameters") or {})}
    run = jobs.queue_run(report, "manual", parameters,
                         requested_by=_caller_id(context))
    if run is None:
        raise tk.ValidationError({"id": [tk._(
            "A run of this report is already queued or running; wait for "
            "it to end or cancel it")]})
    return run.as_dict()


@tk.side_effect_free
@validate(schema.by_id)
def jupyternotebook_report_run_show(context: Context,
                                    data_dict: DataDict) -> dict[str, Any]:
    """A run of a report.

    :param id: the run
    :type id: string
    :returns: ``{id, report_id, trigger, parameters, status, queued_at,
        started_at, finished_at, error, published}``
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_report_run_show", context, data_dict)
    return run_or_not_found(data_dict["id"]).as_dict()


@tk.side_effect_free
@validate(schema.by_id)
def jupyternotebook_report_run_list(context: Context,
                                    data_dict: DataDict
                                    ) -> list[dict[str, Any]]:
    """A report's runs, newest first.

    :param id: the report
    :type id: string
    :rtype: list of dictionaries
    """
    tk.check_access("jupyternotebook_report_run_list", context, data_dict)
    report = report_or_not_found(data_dict["id"])
    return [run.as_dict() for run in ReportRun.for_report(report.id)]


@validate(schema.by_id)
def jupyternotebook_report_run_cancel(context: Context,
                                      data_dict: DataDict) -> dict[str, Any]:
    """Cancel a queued or running run: it is marked cancelled, its server
    is stopped, and it publishes nothing.

    :param id: the run
    :type id: string
    :returns: the run
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_report_run_cancel", context, data_dict)
    run = run_or_not_found(data_dict["id"])
    if run.status not in ACTIVE:
        raise tk.ValidationError({"id": [tk._(
            "This run has already ended ({status})").format(
                status=run.status)]})
    user = context.get("user") or ""
    if not _cancel(run, tk._("Cancelled by {user}").format(user=user)):
        model.Session.expire_all()
        raise tk.ValidationError({"id": [tk._(
            "This run has already ended ({status})").format(
                status=ReportRun.get(run.id).status)]})
    model.Session.expire_all()
    return ReportRun.get(run.id).as_dict()


def _cancel(run: ReportRun, message: str) -> bool:
    run_id, job_id = run.id, run.job_id
    if not transition(run_id, "cancelled", only_from=ACTIVE,
                      finished_at=utcnow(), error={"message": message}):
        return False
    jobs.cancel_job(job_id)
    # the worker also stops the run when it sees the mark; this is for a
    # run whose worker is gone
    jobs.forget_bridge_run(run_id)
    return True


def _inner(context: Context) -> Context:
    return {"model": model, "session": model.Session,
            "user": context.get("user"),
            "auth_user_obj": context.get("auth_user_obj"),
            "ignore_auth": context.get("ignore_auth", False)}
