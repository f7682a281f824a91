"""``/ckan-admin/jupyter``: live capacity, hub health and every session.

Sysadmins only, like the rest of ``/ckan-admin``.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Optional

import flask

import ckan.plugins.toolkit as tk

from . import settings
from . import hub_client, identity
from .settings_sync import sync

log = logging.getLogger(__name__)

blueprint = flask.Blueprint("jupyternotebook_admin", __name__,
                            url_prefix="/ckan-admin/jupyter")


def _context() -> dict[str, Any]:
    return {"user": tk.current_user.name, "auth_user_obj": tk.current_user}


@blueprint.before_request
def _sysadmins_only():
    try:
        tk.check_access("sysadmin", _context())
    except tk.NotAuthorized:
        return tk.abort(403, tk._("Need to be system administrator to "
                                  "administer"))




def duration(seconds: Optional[float]) -> str:
    """A translated duration; "–" when unknown."""
    from .helpers import jupyternotebook_duration
    return "–" if seconds is None else jupyternotebook_duration(seconds)


def session_rows(sessions: list[dict[str, Any]],
                 now: Optional[dt.datetime] = None) -> list[dict[str, Any]]:
    """Sessions with ``age`` and ``time_left`` for display, soonest end first."""
    now = now or dt.datetime.now(dt.timezone.utc)
    rows = []
    for session in sessions:
        started = hub_client.parse_time(session.get("started_at"))
        expires = hub_client.parse_time(session.get("expires_at"))
        row = dict(session)
        row["age"] = duration((now - started).total_seconds()) \
            if started else "–"
        row["time_left"] = duration((expires - now).total_seconds()) \
            if expires else "–"
        row["_sort"] = expires.timestamp() if expires else float("inf")
        rows.append(row)
    rows.sort(key=lambda r: r["_sort"])
    return rows


def index():
    from .hub_client import BridgeError, HubClient

    client = HubClient.from_config()
    health: dict[str, Any] = {}
    try:
        health = client.health()
    except BridgeError as err:
        health = {"status": "down", "error": getattr(err, "message", str(err))}

    capacity = None
    workspaces = None
    sessions: list[dict[str, Any]] = []
    error = None
    if health.get("status") != "down":
        # a sysadmin looking at the page wants the state now
        sync.resync(client, force=True)
        try:
            capacity = client.capacity()
            sessions = [s for s in client.list_sessions()
                        if s.get("status") != "ended"]
        except BridgeError as err:
            error = getattr(err, "message", str(err))
        workspaces = _workspaces()

    return tk.render("admin/jupyter.html", extra_vars={
        "health": health,
        "capacity": capacity,
        "sessions": session_rows(sessions),
        "error": error,
        "settings_pending": sync.is_pending(),
        "settings_rejected": sync.rejection(),
        "untrusted_forwarder": identity.untrusted_forwarder(),
        "trusted_proxies": settings.get("trusted_proxies"),
        "workspaces": workspaces,
    })


#: how many of the largest workspaces the page lists
LARGEST_WORKSPACES = 10


def _workspaces() -> dict[str, Any] | None:
    """Count, total size and the largest workspaces; None when the bridge
    cannot say."""
    from ckan import model
    try:
        found = tk.get_action("jupyternotebook_workspace_list")(
            {**_context(), "model": model}, {"all": True})
    except hub_client.BridgeError:
        return None
    return {**found, "largest": found["workspaces"][:LARGEST_WORKSPACES]}


def stop(session_id: str):
    from .hub_client import BridgeError

    try:
        tk.get_action("jupyternotebook_session_delete")(
            _context(), {"id": session_id})
    except tk.ObjectNotFound:
        tk.h.flash_notice(tk._("That session had already ended."))
    except BridgeError as err:
        tk.h.flash_error(tk._("The session could not be stopped: {error}")
                         .format(error=getattr(err, "message", str(err))))
    else:
        tk.h.flash_success(tk._("The session was stopped and its changes "
                                "discarded."))
    return tk.redirect_to("jupyternotebook_admin.index")


def push_settings():
    from .hub_client import BridgeError

    try:
        sync.push()
    except BridgeError:
        tk.h.flash_error(tk._(
            "The notebook service could not be reached; the settings will be"
            " sent again automatically when it is back."))
    else:
        tk.h.flash_success(tk._("The settings are in force on the notebook"
                                " service."))
    return tk.redirect_to("jupyternotebook_admin.index")


blueprint.add_url_rule("", view_func=index, endpoint="index",
                       methods=["GET"])
blueprint.add_url_rule("/session/<session_id>/stop", view_func=stop,
                       endpoint="stop", methods=["POST"])
blueprint.add_url_rule("/push-settings", view_func=push_settings,
                       endpoint="push_settings", methods=["POST"])
