"""The ``jupyter_notebook`` resource view and the URL serving its preview.

The view (``iframed: False``) is part of CKAN's resource page: a sandboxed
iframe pointing at ``/dataset/<id>/resource/<rid>/jupyter/preview`` and the
**Run this notebook** form. The preview URL answers with the sanitized page
under ``Content-Security-Policy: sandbox``, so even opened directly nothing
from the notebook runs with CKAN's origin.
"""
from __future__ import annotations

import logging
from typing import Any

import flask

import ckan.plugins.toolkit as tk

from . import preview

log = logging.getLogger(__name__)

VIEW_NAME = "jupyter_notebook"


def info() -> dict[str, Any]:
    return {
        "name": VIEW_NAME,
        "title": tk._("Jupyter Notebook"),
        "default_title": tk._("Notebook"),
        "default_description": "",
        "icon": "book",
        "iframed": False,
        "always_available": False,
        "schema": {},
        "preview_enabled": False,
        "full_page_edit": False,
    }


def can_view(data_dict: dict[str, Any]) -> bool:
    return preview.is_notebook_resource(data_dict.get("resource") or {})


def add_to_default_views(config: Any) -> None:
    """Create the view for new ``.ipynb`` resources unless turned off.

    CKAN creates, for a new resource, the views listed in
    ``ckan.views.default_views`` whose ``can_view`` accepts it; there is no
    per-plugin default flag, so the plugin adds itself to that list.
    """
    if not tk.asbool(config.get("ckanext.jupyternotebook.default_view", True)):
        return
    views = config.get("ckan.views.default_views")
    views = list(tk.aslist(views)) if views is not None else []
    if VIEW_NAME not in views:
        config["ckan.views.default_views"] = views + [VIEW_NAME]


def preview_url(package_id: str, resource_id: str) -> str:
    return tk.url_for("jupyternotebook_preview.preview", id=package_id,
                      resource_id=resource_id)


def template_variables(context: Any, data_dict: dict[str, Any]) -> dict[str, Any]:
    """What the view template needs; never raises for a bad notebook."""
    resource = data_dict["resource"]
    package = data_dict["package"]
    error = None
    # Uploads are read from local storage: render now (then cached) so a bad
    # notebook is explained on the page itself. Links may be slow; their
    # errors are explained inside the frame instead.
    if resource.get("url_type") == "upload":
        try:
            preview.resource_preview(resource)
        except preview.PreviewError as err:
            error = err.message()
        except Exception:  # a preview must never break the resource page
            log.exception("preview of resource %s failed", resource.get("id"))
            error = preview.PreviewError().message()
    return {
        "preview_url": preview_url(package["name"] or package["id"],
                                   resource["id"]),
        "preview_error": error,
        "launch_url": tk.url_for("jupyternotebook.launch_notebook",
                                 id=package["name"] or package["id"],
                                 resource_id=resource["id"]),
    }


# --------------------------------------------------------------------------
# the preview URL

blueprint = flask.Blueprint("jupyternotebook_preview", __name__)


def _page_response(body: str) -> flask.Response:
    response = flask.Response(body, status=200,
                              mimetype="text/html")
    response.charset = "utf-8"
    response.headers.update(preview.PREVIEW_HEADERS)
    return response


def preview_page(id: str, resource_id: str):
    context = {"user": tk.current_user.name, "auth_user_obj": tk.current_user}
    try:
        package = tk.get_action("package_show")(context, {"id": id})
        resource = tk.get_action("resource_show")(context, {"id": resource_id})
    except tk.ObjectNotFound:
        return tk.abort(404, tk._("Resource not found"))
    except tk.NotAuthorized:
        return tk.abort(403, tk._("Not authorized to see this resource"))
    if resource.get("package_id") != package["id"] \
            or not preview.is_notebook_resource(resource):
        return tk.abort(404, tk._("Resource not found"))

    title = resource.get("name") or resource["id"]
    try:
        body = preview.resource_preview(resource)
    except preview.PreviewError as err:
        body = preview.message_page(title, err.message())
    except Exception:
        log.exception("preview of resource %s failed", resource_id)
        body = preview.message_page(title, preview.PreviewError().message())
    return _page_response(body)


blueprint.add_url_rule(
    "/dataset/<id>/resource/<resource_id>/jupyter/preview",
    view_func=preview_page, endpoint="preview", methods=["GET"])
