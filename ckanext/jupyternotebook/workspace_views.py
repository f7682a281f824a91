"""The dashboard's workspace buttons (issue 13): Download (a zip streamed
from the bridge) and Delete (a form with CSRF)."""
from __future__ import annotations

from typing import Any

import flask

import ckan.plugins.toolkit as tk

from . import hub_client
from .logic.workspace import workspace_owner

blueprint = flask.Blueprint("jupyternotebook_workspace", __name__)


def _context() -> dict[str, Any]:
    return {"user": tk.current_user.name, "auth_user_obj": tk.current_user}


def download():
    """The user's workspace as ``work.zip`` (sysadmins: ``?user_id=``)."""
    from ckan import model

    data_dict = {"user_id": tk.request.args.get("user_id")}
    context = {**_context(), "model": model}
    try:
        tk.check_access("jupyternotebook_workspace_download", context, data_dict)
        user_id = workspace_owner(context, data_dict)
        chunks = hub_client.HubClient.from_config().workspace_zip(user_id)
    except tk.NotAuthorized:
        return tk.abort(403, tk._("You can only download your own workspace"))
    except (tk.ObjectNotFound, hub_client.NotFound):
        return tk.abort(404, tk._("There is no workspace to download"))
    except hub_client.BridgeError as err:
        tk.h.flash_error(tk._("The workspace could not be downloaded: %s") % err.message)
        return tk.redirect_to("jupyternotebook.dashboard")
    response = flask.Response(flask.stream_with_context(chunks), mimetype="application/zip")
    response.headers["Content-Disposition"] = 'attachment; filename="work.zip"'
    response.headers["Cache-Control"] = "no-store"
    return response


def delete():
    """Delete the user's workspace (the form's Delete button)."""
    from .views import _protect_form
    _protect_form()
    try:
        tk.get_action("jupyternotebook_workspace_delete")(_context(), {})
    except tk.ObjectNotFound:
        tk.h.flash_error(tk._("There is no workspace to delete."))
    except tk.NotAuthorized:
        return tk.abort(403, tk._("You can only delete your own workspace"))
    except hub_client.HubUnavailable as err:
        tk.h.flash_error(err.message)
    except tk.ValidationError as err:
        messages = [m for ms in (err.error_dict or {}).values() for m in ms]
        tk.h.flash_error(" ".join(map(str, messages)) or tk._("The workspace could not be deleted."))
    else:
        tk.h.flash_success(tk._("Your workspace and its files are deleted."))
    return tk.redirect_to("jupyternotebook.dashboard")


blueprint.add_url_rule("/dashboard/jupyter/workspace/download", view_func=download)
blueprint.add_url_rule("/dashboard/jupyter/workspace/delete", view_func=delete,
                       methods=["POST"])
