"""Who may do what with reports: writes as an update of the notebook's
resource, reads as showing it."""
from __future__ import annotations

import ckan.plugins.toolkit as tk
from ckan.types import AuthResult, Context, DataDict

from .model import Report, report_or_not_found, run_or_not_found

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


def _on_resource(action: str, context: Context, resource_id: str | None,
                 refusal: str) -> AuthResult:
    try:
        tk.check_access(action, _inner(context), {"id": resource_id})
    except tk.NotAuthorized:
        return {"success": False, "msg": refusal}
    return {"success": True}


def _inner(context: Context) -> Context:
    return {"model": context.get("model"), "session": context.get("session"),
            "user": context.get("user"),
            "auth_user_obj": context.get("auth_user_obj")}


def _run_report(data_dict: DataDict) -> Report:
    return report_or_not_found(run_or_not_found(data_dict.get("id")).report_id)


def _write(context: Context, resource_id: str) -> AuthResult:
    return _on_resource("resource_update", context, resource_id, tk._(
        "You may not change reports of this notebook: you need the right "
        "to edit its resource"))


def _read(context: Context, resource_id: str) -> AuthResult:
    return _on_resource("resource_show", context, resource_id, tk._(
        "You may not see reports of this notebook"))


def jupyternotebook_report_create(context: Context,
                                  data_dict: DataDict) -> AuthResult:
    return _write(context, data_dict.get("resource_id"))


def jupyternotebook_report_update(context: Context,
                                  data_dict: DataDict) -> AuthResult:
    return _write(context, report_or_not_found(data_dict.get("id")).resource_id)


def jupyternotebook_report_delete(context: Context,
                                  data_dict: DataDict) -> AuthResult:
    return _write(context, report_or_not_found(data_dict.get("id")).resource_id)


def jupyternotebook_report_execute(context: Context,
                                   data_dict: DataDict) -> AuthResult:
    return _write(context, report_or_not_found(data_dict.get("id")).resource_id)


def jupyternotebook_report_run_cancel(context: Context,
                                      data_dict: DataDict) -> AuthResult:
    return _write(context, _run_report(data_dict).resource_id)


@tk.auth_allow_anonymous_access
def jupyternotebook_report_show(context: Context,
                                data_dict: DataDict) -> AuthResult:
    return _read(context, report_or_not_found(data_dict.get("id")).resource_id)


@tk.auth_allow_anonymous_access
def jupyternotebook_report_list(context: Context,
                                data_dict: DataDict) -> AuthResult:
    try:
        tk.check_access("package_show", _inner(context),
                        {"id": data_dict.get("dataset_id")})
    except tk.NotAuthorized:
        return {"success": False,
                "msg": tk._("You may not see this dataset")}
    return {"success": True}


@tk.auth_allow_anonymous_access
def jupyternotebook_report_run_show(context: Context,
                                    data_dict: DataDict) -> AuthResult:
    return _read(context, _run_report(data_dict).resource_id)


@tk.auth_allow_anonymous_access
def jupyternotebook_report_run_list(context: Context,
                                    data_dict: DataDict) -> AuthResult:
    return _read(context, report_or_not_found(data_dict.get("id")).resource_id)
