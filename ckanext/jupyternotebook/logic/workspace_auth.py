"""Who may see, download and delete a workspace: its own (logged-in) user;
sysadmins (who skip these functions) any."""
from __future__ import annotations

import ckan.plugins.toolkit as tk
from ckan.types import AuthResult, Context, DataDict

__all__ = [
    "jupyternotebook_workspace_list",
    "jupyternotebook_workspace_delete",
    "jupyternotebook_workspace_download",
]


def _own(context: Context, data_dict: DataDict, what: str) -> AuthResult:
    name = context.get("user")
    user = context["model"].User.get(name) if name else None
    if user is None:
        return {"success": False, "msg": tk._("Log in to use your workspace")}
    wanted = data_dict.get("user_id")
    if wanted and wanted not in (user.id, user.name):
        return {"success": False, "msg": what}
    return {"success": True}


def jupyternotebook_workspace_list(context: Context, data_dict: DataDict) -> AuthResult:
    if tk.asbool(data_dict.get("all")):
        return {"success": False, "msg": tk._("Only sysadmins can list all workspaces")}
    return _own(context, data_dict, tk._("You can only see your own workspace"))


def jupyternotebook_workspace_delete(context: Context, data_dict: DataDict) -> AuthResult:
    return _own(context, data_dict, tk._("You can only delete your own workspace"))


def jupyternotebook_workspace_download(context: Context, data_dict: DataDict) -> AuthResult:
    return _own(context, data_dict, tk._("You can only download your own workspace"))
