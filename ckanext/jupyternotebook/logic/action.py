from __future__ import annotations

import logging
from typing import Any

import ckan.plugins.toolkit as tk
from ckan.types import Context, DataDict

from .. import config, grants, hub_client, identity, runtime_settings
from . import schema

log = logging.getLogger(__name__)


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
    data, errors = tk.navl_validate(data_dict, schema.session_create(),
                                    context)
    if errors:
        raise tk.ValidationError(errors)

    dataset = tk.get_action("package_show")(_fresh(context),
                                            {"id": data["id"]})
    notebook_id = data.get("resource_id")
    if notebook_id and notebook_id not in {
            r["id"] for r in dataset.get("resources", [])}:
        raise tk.ValidationError(
            {"resource_id": [tk._("Not a resource of this dataset")]})

    request = {
        "user": _launcher(context),
        "client_ip": identity.client_ip(),
        "dataset": {
            "id": dataset["id"],
            "name": dataset["name"],
            "title": dataset.get("title") or dataset["name"],
            "url": tk.url_for("dataset.read", id=dataset["name"],
                              _external=True),
        },
        "resources": [_resource_entry(dataset, r)
                      for r in dataset.get("resources", [])
                      if r.get("url_type") == "upload" or r.get("url")],
        "notebook_resource_id": notebook_id,
    }
    client = hub_client.HubClient.from_config()
    # issue 5: settings saved while the bridge was down (or lost by it) go
    # out before the launch they should govern; never raises
    runtime_settings.resync(client)
    session = client.create_session(request)
    log.info("jupyter session %s for %s on dataset %s",
             session.get("id"), request["user"]["kind"], dataset["name"])
    return session


@tk.side_effect_free
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
    data, errors = tk.navl_validate(data_dict, schema.session_list(),
                                    context)
    if errors:
        raise tk.ValidationError(errors)

    client = hub_client.HubClient.from_config()
    if data.get("all"):
        sessions = client.list_sessions()
    else:
        owner = _launcher(context, create_guest=False)["id"]
        sessions = client.list_sessions(owner) if owner else []
        # the bridge filters already; this guards against a bridge that
        # ignores the parameter
        sessions = [s for s in sessions if s.get("user_id") == owner]

    if data.get("dataset_id"):
        dataset = context["model"].Package.get(data["dataset_id"])
        wanted = dataset.id if dataset else data["dataset_id"]
        sessions = [s for s in sessions if s.get("dataset_id") == wanted]
    return [s for s in sessions if s.get("status") != "ended"]


def jupyternotebook_session_delete(context: Context,
                                   data_dict: DataDict) -> None:
    """Stop a Jupyter session and discard everything done in it.

    Users may stop their own sessions, sysadmins any.

    :param id: the session id
    :type id: string
    """
    tk.check_access("jupyternotebook_session_delete", context, data_dict)
    data, errors = tk.navl_validate(data_dict, schema.session_delete(),
                                    context)
    if errors:
        raise tk.ValidationError(errors)
    try:
        hub_client.HubClient.from_config().delete_session(data["id"])
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
    runtime_settings.resync(client)  # issue 5, as in session_create
    return client.capacity()


def _fresh(context: Context) -> Context:
    return {"model": context["model"], "session": context["session"],
            "user": context.get("user"),
            "auth_user_obj": context.get("auth_user_obj")}


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
        base = config.get("fetch_base_url") or tk.config.get("ckan.site_url")
        entry["fetch_url"] = base.rstrip("/") + path
        entry["source"] = "ckan"
    else:
        # Links are fetched by the bridge itself, behind its SSRF guard.
        entry["fetch_url"] = resource["url"]
        entry["source"] = "external"
    return entry
