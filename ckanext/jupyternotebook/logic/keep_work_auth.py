"""Who may Extend a session and Save from it (issue 13): its owner; saving
also needs edit rights on the dataset as that user, and a login."""
from __future__ import annotations

import ckan.authz as authz
import ckan.plugins.toolkit as tk
from ckan.types import AuthResult, Context, DataDict

from .. import identity

__all__ = ["jupyternotebook_session_extend", "jupyternotebook_session_save"]


def caller_id(context: Context) -> str | None:
    """The CKAN user id of the caller, or a guest's id from the CKAN session
    cookie."""
    if authz.auth_is_anon_user(context):
        return identity.guest_id(create=False)
    user = context.get("auth_user_obj") or context["model"].User.get(
        context.get("user"))
    return getattr(user, "id", None)


def _owns(context: Context, session: dict) -> bool:
    owner = caller_id(context)
    return bool(owner) and session.get("user_id") == owner


@tk.auth_allow_anonymous_access
def jupyternotebook_session_extend(context: Context,
                                   data_dict: DataDict) -> AuthResult:
    from .keep_work import session_of
    session = session_of(context, data_dict.get("id", ""))
    if _owns(context, session):
        return {"success": True}
    return {"success": False,
            "msg": tk._("You can only extend your own sessions")}


@tk.auth_allow_anonymous_access
def jupyternotebook_session_save(context: Context,
                                 data_dict: DataDict) -> AuthResult:
    from .keep_work import session_of
    if authz.auth_is_anon_user(context):
        return {"success": False, "msg": tk._(
            "Guests cannot save to the portal. Log in with an account that"
            " may edit this dataset to save files to it, or use Download"
            " my work.")}
    session = session_of(context, data_dict.get("id", ""))
    if not _owns(context, session):
        return {"success": False,
                "msg": tk._("You can only save from your own sessions")}
    replace_id = data_dict.get("replace_resource_id")
    if replace_id and replace_id != session.get("notebook_resource_id"):
        return {"success": False, "msg": tk._(
            "Only the notebook this session was opened from can be replaced;"
            " save other files as new resources.")}
    try:
        if replace_id:
            tk.check_access("resource_update", _as_caller(context),
                            {"id": replace_id})
        else:
            tk.check_access("resource_create", _as_caller(context),
                            {"package_id": session.get("dataset_id")})
    except tk.NotAuthorized:
        return {"success": False, "msg": tk._(
            "You may not edit this dataset, so files cannot be saved to it."
            " Log in with an account that may edit it, or use Download my"
            " work.")}
    except tk.ObjectNotFound:
        return {"success": False,
                "msg": tk._("The dataset or resource no longer exists")}
    return {"success": True}


def _as_caller(context: Context) -> Context:
    return {"model": context["model"], "session": context.get("session"),
            "user": context.get("user"),
            "auth_user_obj": context.get("auth_user_obj")}
