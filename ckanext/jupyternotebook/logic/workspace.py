"""Actions on workspaces that last (issue 13): list a user's workspace (or
all of them, for sysadmins) and delete one. The files live on the bridge;
the download is a view (``workspace_views``), since its answer is a zip."""
from __future__ import annotations

from typing import Any

import ckan.plugins.toolkit as tk
from ckan.types import Context, DataDict

from .. import hub_client

__all__ = [
    "jupyternotebook_workspace_list",
    "jupyternotebook_workspace_delete",
]


def _current_user_id(context: Context) -> str | None:
    name = context.get("user")
    user = context["model"].User.get(name) if name else None
    return user.id if user is not None else None


def workspace_owner(context: Context, data_dict: DataDict) -> str:
    """The user whose workspace is meant: ``user_id`` (an id or a name), or
    the caller. ObjectNotFound for an unknown user."""
    wanted = data_dict.get("user_id")
    if not wanted:
        own = _current_user_id(context)
        if own is None:
            raise tk.NotAuthorized(tk._("Log in to see your workspace"))
        return own
    user = context["model"].User.get(str(wanted))
    if user is None:
        raise tk.ObjectNotFound(tk._("No such user"))
    return user.id


def _with_names(context: Context, workspaces: list[dict]) -> list[dict]:
    User = context["model"].User
    for ws in workspaces:
        user = User.get(ws["user_id"])
        ws["user_name"] = user.name if user is not None else None
    return workspaces


@tk.side_effect_free
def jupyternotebook_workspace_list(context: Context,
                                   data_dict: DataDict) -> dict[str, Any]:
    """The caller's workspace, another user's (sysadmins) or all (sysadmins).

    :param user_id: the user (id or name); default: the caller
    :type user_id: string
    :param all: every workspace, largest first (sysadmins only)
    :type all: bool
    :returns: ``{"workspaces": [{user_id, user_name, size, quota,
        last_used, in_use}], "count", "total_size"}``
    """
    tk.check_access("jupyternotebook_workspace_list", context, data_dict)
    client = hub_client.HubClient.from_config()
    if tk.asbool(data_dict.get("all")):
        found = client.list_workspaces()
    else:
        found = client.list_workspaces(workspace_owner(context, data_dict))
    return {"workspaces": _with_names(context, found), "count": len(found),
            "total_size": sum(int(ws.get("size") or 0) for ws in found)}


def jupyternotebook_workspace_delete(context: Context,
                                     data_dict: DataDict) -> None:
    """Delete a workspace and its files. Refused while a session of its
    user runs (end it first).

    :param user_id: the user (id or name); default: the caller
    :type user_id: string
    """
    tk.check_access("jupyternotebook_workspace_delete", context, data_dict)
    user_id = workspace_owner(context, data_dict)
    try:
        hub_client.HubClient.from_config().delete_workspace(user_id)
    except hub_client.NotFound:
        raise tk.ObjectNotFound(tk._("There is no workspace to delete")) from None
    except hub_client.BridgeError as err:
        if err.code == "session_live":
            raise tk.ValidationError({"user_id": [tk._(
                "The workspace is in use: stop your notebook sessions first.")]})
        raise
