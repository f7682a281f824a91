from __future__ import annotations

import ckan.authz as authz
import ckan.plugins.toolkit as tk
from ckan.types import AuthResult, Context, DataDict

from .. import settings
from .. import hub_client, identity
from .keep_work_auth import (  # noqa: F401 (issue 13: Save to portal, Extend)
    jupyternotebook_session_extend,
    jupyternotebook_session_save,
)

__all__ = [
    "jupyternotebook_session_create",
    "jupyternotebook_session_list",
    "jupyternotebook_session_delete",
    "jupyternotebook_session_extend",
    "jupyternotebook_session_save",
    "jupyternotebook_capacity_show",
    "jupyternotebook_settings_show",
    "jupyternotebook_settings_update",
]


#: context flag set by the launch view once it has checked the form's CSRF
#: token; the API cannot set it (API callers never supply a context).
GUEST_LAUNCH = "jupyternotebook_guest_launch"


def _is_guest(context: Context) -> bool:
    return authz.auth_is_anon_user(context)


@tk.auth_allow_anonymous_access
def jupyternotebook_session_create(context: Context,
                                   data_dict: DataDict) -> AuthResult:
    dataset_id = data_dict.get("id")
    try:
        tk.check_access("package_show", context, {"id": dataset_id})
    except tk.NotAuthorized:
        return {"success": False,
                "msg": tk._("You are not allowed to read this dataset")}
    if not _is_guest(context):
        return {"success": True}
    if not context.get(GUEST_LAUNCH):
        # A cookieless API call would get a fresh guest id each time, and
        # CKAN's API CSRF exemption cannot be relied on: guests launch only
        # through the plugin's own form, which checks CSRF itself.
        return {"success": False, "msg": tk._(
            "Guests open notebooks with the Open in Jupyter button on the"
            " dataset page. To launch through the API, log in (send an API"
            " token).")}
    if not settings.get("guest_access"):
        return {"success": False,
                "msg": tk._("Log in to open datasets in Jupyter")}
    dataset = context["model"].Package.get(dataset_id)
    if dataset is None or dataset.private:
        return {"success": False,
                "msg": tk._("Log in to open private datasets in Jupyter")}
    return {"success": True}


def jupyternotebook_session_list(context: Context,
                                 data_dict: DataDict) -> AuthResult:
    if _is_guest(context):
        return {"success": False,
                "msg": tk._("Log in to see your notebook sessions")}
    # Only sysadmins (who skip auth functions) may list everybody's sessions.
    if tk.asbool(data_dict.get("all")):
        return {"success": False,
                "msg": tk._("Only sysadmins can list all sessions")}
    return {"success": True}


@tk.auth_allow_anonymous_access
def jupyternotebook_session_delete(context: Context,
                                   data_dict: DataDict) -> AuthResult:
    try:
        session = hub_client.HubClient.from_config().get_session(
            data_dict.get("id", ""))
    except hub_client.NotFound:
        raise tk.ObjectNotFound(tk._("Session not found"))
    if _is_guest(context):
        owner = identity.guest_id(create=False)
    else:
        user = context.get("auth_user_obj") or context["model"].User.get(
            context.get("user"))
        owner = getattr(user, "id", None)
    if owner and session.get("user_id") == owner:
        return {"success": True}
    return {"success": False,
            "msg": tk._("You can only stop your own sessions")}


@tk.auth_allow_anonymous_access
def jupyternotebook_capacity_show(context: Context,
                                  data_dict: DataDict) -> AuthResult:
    return {"success": True}


# Sysadmins never reach auth functions, so refusing everybody here means
# "sysadmins only".


def jupyternotebook_settings_show(context: Context,
                                  data_dict: DataDict) -> AuthResult:
    return {"success": False,
            "msg": tk._("Only sysadmins can see the Jupyter settings")}


def jupyternotebook_settings_update(context: Context,
                                    data_dict: DataDict) -> AuthResult:
    return {"success": False,
            "msg": tk._("Only sysadmins can change the Jupyter settings")}


# reports (issue 14): their auth functions live in reports/auth.py
from ..reports import auth as _reports  # noqa: E402

globals().update({name: getattr(_reports, name) for name in _reports.__all__})
__all__ += _reports.__all__

# workspaces (issue 13): their auth functions live in logic/workspace_auth.py
from . import workspace_auth as _workspaces  # noqa: E402

globals().update({name: getattr(_workspaces, name) for name in _workspaces.__all__})
__all__ += _workspaces.__all__
