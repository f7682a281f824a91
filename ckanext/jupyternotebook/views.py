from __future__ import annotations

import logging
from typing import Any

import flask
from flask.views import MethodView

import ckan.lib.uploader as uploader
import ckan.plugins.toolkit as tk
from ckan.common import streaming_response
from ckan.types import Context

from . import compat, grants, hub_client
from .compat import file_keeper as fk, files
from . import settings

log = logging.getLogger(__name__)

jupyternotebook = flask.Blueprint("jupyternotebook", __name__)


def _context() -> Context:
    return {"user": tk.current_user.name, "auth_user_obj": tk.current_user}


def _is_anonymous() -> bool:
    return not tk.current_user.is_authenticated


def _protect_form() -> None:
    """Check the form's CSRF token unless the caller sent an API token.

    CKAN 2.12 skips CSRF for anonymous visitors, and exempts a view for good
    once such a request reaches it. A launch spends a guest slot, so guests'
    posts are checked here too; every browser has the token from the page
    the button is on.
    """
    if tk.current_user.is_authenticated and tk.g.get("login_via_auth_header"):
        return
    from ckan.config.middleware.flask_app import csrf
    csrf.protect()


class LaunchView(MethodView):
    """Open a dataset (and optionally one of its notebooks) in Jupyter.

    POST waits until the server is ready and answers 303 to the hub; GET, as
    from a bookmark or a reload, goes back to the page the button is on.
    """

    def get(self, id: str, resource_id: str | None = None):
        if resource_id:
            return tk.redirect_to("resource.read", id=id,
                                  resource_id=resource_id)
        return tk.redirect_to("dataset.read", id=id)

    def post(self, id: str, resource_id: str | None = None):
        _protect_form()
        data_dict = {"id": id}
        if resource_id:
            data_dict["resource_id"] = resource_id
        context = _context()
        # the form's CSRF token was checked just above: guests may launch
        from .logic.auth import GUEST_LAUNCH
        context[GUEST_LAUNCH] = True
        try:
            session = tk.get_action("jupyternotebook_session_create")(
                context, data_dict)
        except hub_client.NotFound as err:
            # a 404 from the bridge is the bridge's fault, not a missing
            # dataset (hub_client.NotFound is an ObjectNotFound)
            log.error("the bridge answered 404 to a launch of %s: %s", id, err)
            return _unavailable_page(
                hub_client.BridgeError(str(err), "not_found", 404), id, status=502)
        except tk.ObjectNotFound:
            return tk.abort(404, tk._("Dataset not found"))
        except tk.NotAuthorized:
            return _not_authorized(id)
        except hub_client.CapacityReached as err:
            return _capacity_page(err, id)
        except hub_client.HubUnavailable as err:
            return _unavailable_page(err, id)
        except hub_client.BridgeError as err:
            log.error("bridge refused a launch of %s: %s", id, err)
            return _unavailable_page(err, id, status=502)
        except tk.ValidationError as err:
            return tk.abort(400, tk._("Cannot open this in Jupyter: %s")
                            % err.error_summary)
        return flask.redirect(_absolute(session["launch_url"]), code=303)


def fetch(resource_id: str):
    """Stream an uploaded resource to the sidecar holding a valid grant."""
    try:
        grants.verify(tk.request.args.get("grant"), resource_id)
    except grants.InvalidGrant as err:
        log.info("refused fetch of %s: %s", resource_id, err)
        return tk.abort(403, tk._("This download link is not valid or has "
                                  "expired."))
    try:
        resource = tk.get_action("resource_show")(
            {"ignore_auth": True}, {"id": resource_id})
    except tk.ObjectNotFound:
        return tk.abort(404, tk._("Resource not found"))
    if resource.get("url_type") != "upload":
        return tk.abort(404, tk._("This resource has no uploaded file"))

    upload = uploader.get_resource_uploader(resource)
    path = upload.get_path(resource["id"])
    mimetype = resource.get("mimetype") or "application/octet-stream"
    storage = compat.keeper_storage(upload)
    if storage is not None:
        location = files.Location(path)
        try:
            file_data = files.FileData(location, size=storage.size(location),
                                       content_type=mimetype)
        except (files.exc.LocationError, fk.exc.MissingFileError):
            return tk.abort(404, tk._("No file is stored for this resource"))
        response = streaming_response(storage.stream(file_data), mimetype)
        response.headers["Content-Length"] = str(file_data.size)
    else:
        try:
            response = flask.send_file(path, mimetype=mimetype)
        except FileNotFoundError:
            return tk.abort(404, tk._("No file is stored for this resource"))
    response.headers["Cache-Control"] = "no-store"
    return response


def dashboard():
    """My notebook sessions (all sessions, for sysadmins)."""
    if _is_anonymous():
        return tk.redirect_to(tk.config.get("ckan.auth.login_view"),
                              came_from=tk.url_for("jupyternotebook.dashboard"))
    show_all = tk.current_user.sysadmin
    error = None
    sessions: list[dict[str, Any]] = []
    try:
        sessions = tk.get_action("jupyternotebook_session_list")(
            _context(), {"all": show_all})
    except hub_client.BridgeError as err:
        error = err
    except tk.NotAuthorized:
        return tk.abort(403, tk._("Not authorized to see these sessions"))
    user_dict = tk.get_action("user_show")(_context(),
                                           {"id": tk.current_user.id})
    return tk.render("jupyternotebook/dashboard.html", extra_vars={
        "sessions": sessions, "show_all": show_all, "error": error,
        "user_dict": user_dict,
    })


def stop(session_id: str):
    _protect_form()
    try:
        tk.get_action("jupyternotebook_session_delete")(
            _context(), {"id": session_id})
    except tk.ObjectNotFound:
        tk.h.flash_error(tk._("That session had already ended."))
    except tk.NotAuthorized:
        return tk.abort(403, tk._("You can only stop your own sessions"))
    except hub_client.HubUnavailable as err:
        return _unavailable_page(err, None)
    except hub_client.BridgeError as err:
        tk.h.flash_error(tk._("The session could not be stopped: %s")
                         % err.message)
    else:
        tk.h.flash_success(tk._("The session was stopped and its changes "
                                "discarded."))
    return tk.redirect_to("jupyternotebook.dashboard")


def _absolute(url: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    return settings.get("hub_url").rstrip("/") + "/" + url.lstrip("/")


def _not_authorized(id: str):
    if _is_anonymous():
        body = tk.render("jupyternotebook/login_required.html", extra_vars={
            "dataset_id": id,
            "guest_access": settings.get("guest_access"),
        })
        return body, 403
    return tk.abort(403, tk._("You are not allowed to open this dataset in "
                              "Jupyter"))


def _capacity_page(err: hub_client.CapacityReached, id: str):
    body = tk.render("jupyternotebook/capacity.html", extra_vars={
        "error": err, "dataset_id": id, "is_guest": _is_anonymous(),
    })
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    return body, 429, headers


def _unavailable_page(err: hub_client.BridgeError, id: str | None,
                      status: int = 503):
    body = tk.render("jupyternotebook/unavailable.html", extra_vars={
        "error": err, "dataset_id": id,
    })
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:  # "busy": this process's launches are full
        return body, status, {"Retry-After": str(retry_after)}
    return body, status


launch = LaunchView.as_view("launch")
jupyternotebook.add_url_rule("/dataset/<id>/jupyter", view_func=launch,
                             methods=["GET", "POST"])
jupyternotebook.add_url_rule(
    "/dataset/<id>/resource/<resource_id>/jupyter",
    view_func=launch, endpoint="launch_notebook", methods=["GET", "POST"])
jupyternotebook.add_url_rule("/jupyter/fetch/<resource_id>", view_func=fetch)
jupyternotebook.add_url_rule("/dashboard/jupyter", view_func=dashboard)
jupyternotebook.add_url_rule("/jupyter/session/<session_id>/stop",
                             view_func=stop, methods=["POST"])


def blueprints() -> list[flask.Blueprint]:
    from . import admin, notebook_view  # the preview and admin pages
    from . import keep_work_views  # Extend, and saves started in JupyterLab
    keep_work_views.exempt_from_csrf()
    from .reports import views as reports
    from . import workspace_views  # the dashboard's workspace buttons
    return [jupyternotebook, notebook_view.blueprint, admin.blueprint,
            reports.blueprint, keep_work_views.blueprint, workspace_views.blueprint]
