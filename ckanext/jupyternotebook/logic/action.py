"""The plugin's actions: sessions (launch, list, stop, capacity) and the
runtime settings (show, update, and the chained ``config_option_update``
that pushes them to the bridge)."""
from __future__ import annotations

import logging
from typing import Any

import ckan.plugins.toolkit as tk
from ckan.logic import validate
from ckan.types import Context, DataDict

from .. import settings
from .. import grants, hub_client, identity, launch_slots
from ..settings_sync import admin_saved, differences, sync
from . import schema
from .keep_work import (  # noqa: F401 (issue 13: Save to portal, Extend)
    jupyternotebook_session_extend,
    jupyternotebook_session_save,
)

log = logging.getLogger(__name__)

__all__ = [
    "jupyternotebook_session_create",
    "jupyternotebook_session_list",
    "jupyternotebook_session_delete",
    "jupyternotebook_session_extend",
    "jupyternotebook_session_save",
    "jupyternotebook_capacity_show",
    "jupyternotebook_settings_show",
    "jupyternotebook_settings_update",
    "config_option_update",
]


@validate(schema.session_create)
def jupyternotebook_session_create(context: Context,
                                   data_dict: DataDict) -> dict[str, Any]:
    """Start a Jupyter session on a dataset, or return the one running.

    Waits until the notebook server is ready. Anonymous callers launch as
    guests, identified by their CKAN session cookie.

    :param id: the id or name of the dataset
    :type id: string
    :param resource_id: an ``.ipynb`` resource of the dataset to open
        (optional)
    :type resource_id: string

    :returns: the session, with the ``launch_url`` to send the browser to
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_session_create", context, data_dict)

    dataset = tk.get_action("package_show")(_fresh(context),
                                            {"id": data_dict["id"]})
    notebook_id = data_dict.get("resource_id")
    if notebook_id and notebook_id not in {
            r["id"] for r in dataset.get("resources", [])}:
        raise tk.ValidationError(
            {"resource_id": [tk._("Not a resource of this dataset")]})

    # Grants are served with ignore_auth, so grant only what this visitor
    # may read: a plugin can refuse resources of a readable dataset.
    readable = [r for r in dataset.get("resources", [])
                if _may_read_resource(context, r["id"])]
    if notebook_id and notebook_id not in {r["id"] for r in readable}:
        raise tk.NotAuthorized(
            tk._("You are not allowed to open this notebook"))

    request = _launch_request(context, dataset, readable, notebook_id)
    client = hub_client.HubClient.from_config()
    # issue 5: settings saved while the bridge was down (or lost by it) go
    # out before the launch they should govern; never raises
    sync.resync(client)
    with launch_slots.launch_slot():
        session = client.create_session(request)
    log.info("jupyter session %s for %s on dataset %s",
             session.get("id"), request["user"]["kind"], dataset["name"])
    return session


def _launch_request(context: Context, dataset: dict[str, Any],
                    readable: list[dict[str, Any]],
                    notebook_id: str | None) -> dict[str, Any]:
    """The bridge's POST /api/sessions body (openapi.json SessionRequest)."""
    request = {
        "user": _launcher(context),
        "client_ip": identity.client_ip(),
        # where the bridge posts saves started in JupyterLab (issue 13)
        "portal_url": (settings.get("fetch_base_url")
                       or tk.config.get("ckan.site_url")).rstrip("/"),
        "dataset": {
            "id": dataset["id"],
            "name": dataset["name"],
            "title": dataset.get("title") or dataset["name"],
            "url": tk.url_for("dataset.read", id=dataset["name"],
                              _external=True),
        },
        "resources": [_resource_entry(dataset, r) for r in readable
                      if r.get("url_type") == "upload" or r.get("url")],
    }
    if notebook_id:
        request["notebook_resource_id"] = notebook_id
    return request


@tk.side_effect_free
@validate(schema.session_list)
def jupyternotebook_session_list(context: Context,
                                 data_dict: DataDict) -> list[dict[str, Any]]:
    """The caller's live Jupyter sessions; all sessions for sysadmins who
    ask for them.

    :param dataset_id: only sessions on this dataset (id or name; optional)
    :type dataset_id: string
    :param all: list every user's sessions (sysadmins only; default false)
    :type all: bool

    :rtype: list of dictionaries
    """
    tk.check_access("jupyternotebook_session_list", context, data_dict)

    client = hub_client.HubClient.from_config()
    if data_dict.get("all"):
        sessions = client.list_sessions()
    else:
        owner = _launcher(context, create_guest=False)["id"]
        sessions = client.list_sessions(owner) if owner else []
        # the bridge filters already; this guards against a bridge that
        # ignores the parameter
        sessions = [s for s in sessions if s.get("user_id") == owner]

    if data_dict.get("dataset_id"):
        dataset = context["model"].Package.get(data_dict["dataset_id"])
        wanted = dataset.id if dataset else data_dict["dataset_id"]
        sessions = [s for s in sessions if s.get("dataset_id") == wanted]
    return [s for s in sessions if s.get("status") != "ended"]


@validate(schema.session_delete)
def jupyternotebook_session_delete(context: Context,
                                   data_dict: DataDict) -> None:
    """Stop a Jupyter session and discard everything done in it.

    Users may stop their own sessions, sysadmins any.

    :param id: the session id
    :type id: string
    """
    tk.check_access("jupyternotebook_session_delete", context, data_dict)
    try:
        hub_client.HubClient.from_config().delete_session(data_dict["id"])
    except hub_client.NotFound:
        raise tk.ObjectNotFound(tk._("Session not found"))


@tk.side_effect_free
def jupyternotebook_capacity_show(context: Context,
                                  data_dict: DataDict) -> dict[str, Any]:
    """Sessions in use and available, as the notebook service reports them.

    :returns: ``{guests: {active, max}, users: {active},
        sessions: {active, max}, pool: {ready, size}}``
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_capacity_show", context, data_dict)
    client = hub_client.HubClient.from_config()
    sync.resync(client)  # issue 5, as in session_create
    return client.capacity()


def _fresh(context: Context) -> Context:
    return {"model": context["model"], "session": context["session"],
            "user": context.get("user"),
            "auth_user_obj": context.get("auth_user_obj")}


def _may_read_resource(context: Context, resource_id: str) -> bool:
    try:
        tk.check_access("resource_show", _fresh(context), {"id": resource_id})
    except tk.NotAuthorized:
        return False
    return True


def _launcher(context: Context, create_guest: bool = True) -> dict[str, Any]:
    user_name = context.get("user")
    user = context["model"].User.get(user_name) if user_name else None
    if user is not None:
        return {"kind": "user", "id": user.id, "name": user.name}
    guest = identity.guest_id(create=create_guest)
    if guest is None and create_guest:
        raise tk.NotAuthorized(
            tk._("Guests need a browser session to open notebooks"))
    return {"kind": "guest", "id": guest, "name": "guest"}


def _resource_entry(dataset: dict[str, Any],
                    resource: dict[str, Any]) -> dict[str, Any]:
    entry = {key: resource.get(key) for key in (
        "id", "name", "format", "size", "hash", "last_modified",
        "metadata_modified", "url_type")}
    entry["name"] = entry["name"] or resource["id"]
    if resource.get("url_type") == "upload":
        # Uploads (public or private) come through CKAN's storage layer,
        # authorised by a grant naming only this resource.
        path = tk.url_for("jupyternotebook.fetch", resource_id=resource["id"],
                          grant=grants.sign([resource["id"]]))
        base = settings.get("fetch_base_url") or tk.config.get("ckan.site_url")
        entry["fetch_url"] = base.rstrip("/") + path
        entry["source"] = "ckan"
    else:
        # Links are fetched by the bridge itself, behind its SSRF guard.
        entry["fetch_url"] = resource["url"]
        entry["source"] = "external"
    return entry


# --------------------------------------------------------------------------
# runtime settings (sysadmins)


def _bridge_view(include: bool) -> dict[str, Any]:
    """What the bridge enforces now, or why we cannot tell."""
    from ..hub_client import BridgeError, HubClient

    if not include:
        return {"bridge": None, "in_sync": None}
    try:
        reported = HubClient.from_config().get_settings()
    except BridgeError as err:
        return {"bridge": None, "in_sync": None,
                "bridge_error": getattr(err, "message", str(err))}
    values = {k: reported.get(k) for k in settings.RUNTIME_EDITABLE}
    values["updated_at"] = reported.get("updated_at")
    return {"bridge": values,
            "in_sync": not differences(reported)}


@tk.side_effect_free
@validate(schema.settings_show)
def jupyternotebook_settings_show(context: Context,
                                  data_dict: DataDict) -> dict[str, Any]:
    """The runtime-editable Jupyter settings. Sysadmins only.

    :param bridge: also ask the notebook service what it enforces
        (default true)
    :type bridge: bool

    :returns: ``settings`` (in force in CKAN), ``deployed`` (from the
        environment, ckan.ini or the defaults), ``saved`` (names saved by a
        sysadmin), ``pending`` (not yet pushed), ``rejected`` (the bridge's
        message when it refused them), ``bridge`` (what the bridge reports,
        or null when it cannot be reached) and ``in_sync``
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_settings_show", context, data_dict)
    result = {
        "settings": settings.runtime_settings(),
        "deployed": settings.deployed_runtime_settings(),
        "saved": sorted(admin_saved()),
        "pending": sync.is_pending(),
        "rejected": sync.rejection(),
    }
    result.update(_bridge_view(data_dict.get("bridge", True)))
    return result


def jupyternotebook_settings_update(context: Context,
                                    data_dict: DataDict) -> dict[str, Any]:
    """Change runtime-editable Jupyter settings and push them to the bridge.

    Values are stored by CKAN (as on the admin config page) and apply to new
    sessions at once; running sessions keep their limits. Sysadmins only.

    :param timeout: maximum session age in seconds (optional; likewise
        ``idle_timeout``, ``max_guests``, ``max_sessions``,
        ``max_sessions_per_user``, ``max_guests_per_address``,
        ``guest_access``, ``guest_rate_limit``, ``cpu_percent``,
        ``memory_limit``, ``disk_limit``, ``session_egress`` and
        ``pool_size``)
    :type timeout: int
    :param reset: forget every saved value and return to the deployed ones
        (environment, ckan.ini, defaults); other parameters are then ignored
    :type reset: bool

    :returns: as ``jupyternotebook_settings_show``, plus ``pushed`` (whether
        the bridge accepted them now)
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_settings_update", context, data_dict)
    unknown = set(data_dict) - set(settings.RUNTIME_EDITABLE) - {"reset"}
    if unknown:
        raise tk.ValidationError({
            name: [tk._("Not a runtime-editable setting")]
            for name in sorted(unknown)})
    data, errors = tk.navl_validate(
        data_dict, schema.settings_update(), context)
    if errors:
        raise tk.ValidationError(errors)

    if data.pop("reset", False):
        pushed = sync.reset_to_deployed()
    else:
        if not data:
            raise tk.ValidationError(
                {"settings": [tk._("Give at least one setting to change")]})
        inner: dict[str, Any] = {"user": context.get("user"),
                                 "ignore_auth": True}
        # Through config_option_update, so the values are stored and
        # spread to other CKAN processes exactly as the admin page does it,
        # and our chained config_option_update pushes them.
        tk.get_action("config_option_update")(
            inner, {settings.key(k): v for k, v in data.items()})
        pushed = inner.get("jupyternotebook_push", {}).get("pushed", False)

    result = jupyternotebook_settings_show(
        {"user": context.get("user"), "ignore_auth": True}, {"bridge": True})
    result["pushed"] = pushed
    return result


@tk.chained_action
def config_option_update(original_action, context, data_dict):
    """Save as CKAN does, then push runtime settings to the bridge."""
    result = original_action(context, data_dict)
    ours = {settings.key(short) for short in settings.RUNTIME_EDITABLE}
    if not ours.intersection(result):
        return result
    outcome: dict[str, Any] = {"pushed": False, "error": None}
    try:
        outcome["bridge"] = sync.push()
        outcome["pushed"] = True
    except hub_client.HubUnavailable as err:
        outcome["error"] = err.message
        _flash_on_admin_page(tk._(
            "The settings were saved, but the notebook service could not be"
            " reached, so they are not in force there yet. They will be sent"
            " again automatically when it is back."))
    except hub_client.BridgeError as err:
        outcome["error"] = err.message
        _flash_on_admin_page(tk._(
            "The settings were saved, but the notebook service refused them:"
            " {message}").format(message=err.message))
    context["jupyternotebook_push"] = outcome
    return result


def _flash_on_admin_page(message: str) -> None:
    """Tell the sysadmin, when the save came from the admin config form."""
    from flask import has_request_context, request

    if has_request_context() and request.endpoint == "admin.config":
        tk.h.flash_error(message)


# reports (issue 14): their actions live in reports/action.py
from ..reports import action as _reports  # noqa: E402

globals().update({name: getattr(_reports, name) for name in _reports.__all__})
__all__ += _reports.__all__

# workspaces (issue 13): their actions live in logic/workspace.py
from . import workspace as _workspaces  # noqa: E402

globals().update({name: getattr(_workspaces, name) for name in _workspaces.__all__})
__all__ += _workspaces.__all__
