"""The report page of a notebook resource: set up, Run now, run history,
cancel. Every form posts with CSRF; every refusal is a page that says why."""
from __future__ import annotations

import json
import logging
from typing import Any

import flask

import ckan.plugins.toolkit as tk

from .. import hub_client, preview
from . import notebook_params

log = logging.getLogger(__name__)

blueprint = flask.Blueprint("jupyternotebook_reports", __name__)

PREFIX = "/dataset/<id>/resource/<resource_id>/report"


def _context() -> dict[str, Any]:
    return {"user": tk.current_user.name, "auth_user_obj": tk.current_user}


def _load(id: str, resource_id: str) -> tuple[dict, dict, dict | None]:
    """The dataset, the notebook resource and its report; aborts with a
    page that says why when the visitor may not set up reports here."""
    if not tk.current_user.is_authenticated:
        return tk.abort(403, tk._("Log in to set up reports"))
    try:
        dataset = tk.get_action("package_show")(_context(), {"id": id})
        resource = tk.get_action("resource_show")(
            _context(), {"id": resource_id})
    except tk.ObjectNotFound:
        return tk.abort(404, tk._("Resource not found"))
    except tk.NotAuthorized:
        return tk.abort(403, tk._("You may not see this resource"))
    if resource["package_id"] != dataset["id"]:
        return tk.abort(404, tk._("Resource not found"))
    if not preview.is_notebook_resource(resource):
        return tk.abort(404, tk._(
            "Only notebook (.ipynb) resources can be set up as reports"))
    try:
        tk.check_access("resource_update", _context(), {"id": resource_id})
    except tk.NotAuthorized:
        return tk.abort(403, tk._(
            "Only users who may edit this dataset can set up its reports"))
    reports = tk.get_action("jupyternotebook_report_list")(
        _context(), {"dataset_id": dataset["id"]})
    report = next((r for r in reports if r["resource_id"] == resource_id),
                  None)
    return dataset, resource, report


def _declared(resource: dict) -> tuple[list[dict], str | None]:
    try:
        nb = preview.load_notebook(preview.read_resource(resource))
    except preview.PreviewError as err:
        return [], err.message()
    except Exception:
        log.exception("reading the parameters of %s failed", resource["id"])
        return [], tk._("The notebook could not be read")
    return notebook_params.declared(nb), None


def _form_value(text: str) -> Any:
    """A form field as a JSON scalar when it reads as one (2024, 0.5,
    true, null, "quoted"), else the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(
        value, (str, int, float, bool)) else text


def _parameters_from(form: Any, prefix: str = "param-",
                     extra: str = "parameters_json") -> Any:
    """Values typed into the form: one field per declared parameter, and a
    JSON object for the others. Returns the JSON text when that object is
    malformed, so the action names the error."""
    values: dict[str, Any] = {}
    raw = (form.get(extra) or "").strip()
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw
        if not isinstance(parsed, dict):
            return raw
        values.update(parsed)
    for key in form:
        if key.startswith(prefix):
            text = form.get(key, "").strip()
            if text != "":
                values[key[len(prefix):]] = _form_value(text)
    return values


def _page(dataset: dict, resource: dict, report: dict | None,
          errors: dict | None = None, form: Any = None, status: int = 200):
    declared, declared_error = _declared(resource)
    runs = []
    if report:
        runs = tk.get_action("jupyternotebook_report_run_list")(
            _context(), {"id": report["id"]})
    names = {r["id"]: r for r in dataset.get("resources", [])}
    return tk.render("jupyternotebook/reports/report.html", extra_vars={
        "pkg": dataset, "resource": resource, "report": report,
        "runs": runs, "declared": declared,
        "declared_error": declared_error, "errors": errors or {},
        "form": form or {}, "resources_by_id": names,
    }), status


def show(id: str, resource_id: str):
    dataset, resource, report = _load(id, resource_id)
    return _page(dataset, resource, report)


def save(id: str, resource_id: str):
    from ..views import _protect_form
    _protect_form()
    dataset, resource, report = _load(id, resource_id)
    form = flask.request.form
    data = {
        "parameters": _parameters_from(form),
        "schedule": form.get("schedule", ""),
        "timezone": form.get("timezone", "") or "UTC",
        "on_data_change": form.get("on_data_change") in ("on", "true", "1"),
        "time_limit": form.get("time_limit", ""),
    }
    try:
        if report:
            tk.get_action("jupyternotebook_report_update")(
                _context(), {"id": report["id"], **data})
            tk.h.flash_success(tk._("The report's settings are saved"))
        else:
            tk.get_action("jupyternotebook_report_create")(
                _context(), {"resource_id": resource_id, **data})
            tk.h.flash_success(tk._("The notebook is set up as a report"))
    except tk.ValidationError as err:
        return _page(dataset, resource, report, errors=err.error_dict,
                     form=form, status=400)
    return tk.redirect_to("jupyternotebook_reports.show", id=id,
                          resource_id=resource_id)


def run_now(id: str, resource_id: str):
    from ..views import _protect_form
    _protect_form()
    dataset, resource, report = _load(id, resource_id)
    if report is None:
        return tk.abort(404, tk._("Set the notebook up as a report first"))
    parameters = _parameters_from(flask.request.form, prefix="run-param-",
                                  extra="run_parameters_json")
    try:
        tk.get_action("jupyternotebook_report_execute")(
            _context(), {"id": report["id"], "parameters": parameters})
    except tk.ValidationError as err:
        return _page(dataset, resource, report, errors=err.error_dict,
                     form=flask.request.form, status=400)
    tk.h.flash_success(tk._("The report run is queued"))
    return tk.redirect_to("jupyternotebook_reports.show", id=id,
                          resource_id=resource_id)


def cancel(id: str, resource_id: str, run_id: str):
    from ..views import _protect_form
    _protect_form()
    dataset, resource, report = _load(id, resource_id)
    try:
        run = tk.get_action("jupyternotebook_report_run_show")(
            _context(), {"id": run_id})
        if report is None or run["report_id"] != report["id"]:
            raise tk.ObjectNotFound()
        tk.get_action("jupyternotebook_report_run_cancel")(
            _context(), {"id": run_id})
    except tk.ObjectNotFound:
        return tk.abort(404, tk._("Report run not found"))
    except tk.ValidationError as err:
        return _page(dataset, resource, report, errors=err.error_dict,
                     status=409)
    except hub_client.BridgeError as err:
        return _page(dataset, resource, report,
                     errors={"cancel": [err.message]}, status=502)
    tk.h.flash_success(tk._("The run is cancelled"))
    return tk.redirect_to("jupyternotebook_reports.show", id=id,
                          resource_id=resource_id)


def delete(id: str, resource_id: str):
    from ..views import _protect_form
    _protect_form()
    dataset, resource, report = _load(id, resource_id)
    if report is not None:
        tk.get_action("jupyternotebook_report_delete")(
            _context(), {"id": report["id"]})
        tk.h.flash_success(tk._(
            "The report is removed; what it published stays on the dataset"))
    return tk.redirect_to("jupyternotebook_reports.show", id=id,
                          resource_id=resource_id)


blueprint.add_url_rule(PREFIX, view_func=show, endpoint="show")
blueprint.add_url_rule(PREFIX, view_func=save, endpoint="save",
                       methods=["POST"])
blueprint.add_url_rule(PREFIX + "/run", view_func=run_now, endpoint="run",
                       methods=["POST"])
blueprint.add_url_rule(PREFIX + "/delete", view_func=delete,
                       endpoint="delete", methods=["POST"])
blueprint.add_url_rule(PREFIX + "/runs/<run_id>/cancel", view_func=cancel,
                       endpoint="cancel", methods=["POST"])
