"""Pages and endpoints for keeping work (issue 13): Extend from the
dashboard, and the bridge-token endpoint that saves a file on behalf of a
session's user when Save to portal is clicked in JupyterLab.

``POST /jupyter/api/session-save`` trusts nothing but the bridge token
(compared in constant time): no cookie or CKAN API token of the request
counts, so it is exempt from CSRF, which guards cookie logins. The bridge
names the session; the user is the session's own, looked up from the
bridge's record, and the save runs as that user with CKAN's own checks.
"""
from __future__ import annotations

import hmac
import logging
from typing import Any

import flask

import ckan.plugins.toolkit as tk
from ckan import model

from . import hub_client, settings

log = logging.getLogger(__name__)

blueprint = flask.Blueprint("jupyternotebook_keep", __name__)


def _context() -> dict[str, Any]:
    return {"user": tk.current_user.name, "auth_user_obj": tk.current_user}


def extend(session_id: str):
    """The dashboard's Extend button."""
    from .views import _protect_form
    _protect_form()
    try:
        session = tk.get_action("jupyternotebook_session_extend")(
            _context(), {"id": session_id})
    except tk.ObjectNotFound:
        tk.h.flash_error(tk._("That session has already ended."))
    except tk.NotAuthorized:
        return tk.abort(403, tk._("You can only extend your own sessions"))
    except hub_client.HubUnavailable as err:
        tk.h.flash_error(err.message)
    except hub_client.BridgeError as err:
        tk.h.flash_error(tk._("The session could not be extended: %s")
                         % err.message)
    else:
        tk.h.flash_success(tk._("The session now ends at %s.") % tk.h.render_datetime(
            session.get("expires_at"), with_hours=True))
    return tk.redirect_to("jupyternotebook.dashboard")


def _json(status: int, error: str, message: str):
    return flask.jsonify({"error": error, "message": message}), status


def session_save_api():
    """Save a session's file as its user; called by the bridge only."""
    token = settings.get("api_token") or ""
    header = tk.request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else ""
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        return _json(401, "unauthorized", "A valid bridge token is required.")
    body = tk.request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("session_id"), str) \
            or not isinstance(body.get("path"), str):
        return _json(400, "invalid", "Send JSON {session_id, path, name?, replace?}.")
    try:
        session = hub_client.HubClient.from_config().get_session(body["session_id"])
    except hub_client.NotFound:
        return _json(404, "not_found", "No such session.")
    except hub_client.BridgeError as err:
        return _json(503, "hub_unavailable", err.message)
    user = None
    if session.get("user_kind") == "user":
        user = model.User.get(session.get("user_id") or "")
    if user is None or user.state != "active":
        return _json(403, "login_required", tk._(
            "Guests cannot save to the portal. Log in with an account that may"
            " edit this dataset to save files to it, or use Download my work."))
    data: dict[str, Any] = {"id": session["id"], "path": body["path"]}
    if isinstance(body.get("name"), str) and body["name"].strip():
        data["name"] = body["name"].strip()
    if body.get("replace"):
        if not session.get("notebook_resource_id"):
            return _json(409, "no_notebook", tk._(
                "This session was not opened from a notebook of the dataset;"
                " save the file as a new resource instead."))
        data["replace_resource_id"] = session["notebook_resource_id"]
    from .logic.keep_work import SESSION_KEY, FileTooLarge
    context = {"user": user.name, "auth_user_obj": user, "ignore_auth": False,
               SESSION_KEY: session}
    try:
        resource = tk.get_action("jupyternotebook_session_save")(context, data)
    except tk.NotAuthorized as err:
        return _json(403, "not_authorized", str(err) or tk._("Not allowed."))
    except tk.ObjectNotFound as err:
        return _json(404, "file_not_found", str(err) or tk._("Not found."))
    except FileTooLarge as err:
        return _json(413, "too_large", _first_error(err))
    except hub_client.HubUnavailable as err:
        return _json(503, "hub_unavailable", err.message)
    except hub_client.BridgeError as err:
        return _json(err.status if err.status in (400, 409) else 502, err.code, err.message)
    except tk.ValidationError as err:
        return _json(400, "bad_path" if "path" in err.error_dict else "invalid",
                     _first_error(err))
    url = tk.url_for("resource.read", id=resource["package_id"],
                     resource_id=resource["id"], _external=True)
    return flask.jsonify({"resource": resource, "url": url})


def _first_error(err: tk.ValidationError) -> str:
    for messages in err.error_dict.values():
        if isinstance(messages, list) and messages:
            return str(messages[0])
    return err.error_summary and "; ".join(
        f"{k}: {v}" for k, v in err.error_summary.items()) or tk._("Invalid request.")


blueprint.add_url_rule("/dashboard/jupyter/<session_id>/extend",
                       view_func=extend, methods=["POST"])
blueprint.add_url_rule("/jupyter/api/session-save",
                       view_func=session_save_api, methods=["POST"])


def exempt_from_csrf() -> None:
    """The bridge's endpoint carries no cookie login: its bearer token is
    the only credential it accepts (see the module docstring)."""
    from ckan.config.middleware.flask_app import csrf
    csrf.exempt(session_save_api)
