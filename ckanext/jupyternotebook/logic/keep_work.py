"""Keeping work made in a session (issue 13): Save to portal and Extend.

Saving runs CKAN's own ``resource_create`` / ``resource_update`` as the
session's user (never ``ignore_auth``), so CKAN's permission checks,
``ckan.max_resource_size``, the default views (a notebook gets its preview)
and the activity stream ("<user> updated the dataset") all apply as for an
upload through the form. The file comes from the bridge, which reads it from
the session's home without following links.
"""
from __future__ import annotations

import logging
import posixpath
import tempfile
from typing import IO, Any

import ckan.plugins.toolkit as tk
from ckan.logic import validate
from ckan.types import Context, DataDict
from werkzeug.datastructures import FileStorage

from .. import hub_client
from . import schema

log = logging.getLogger(__name__)

__all__ = ["jupyternotebook_session_save", "jupyternotebook_session_extend"]

#: extra of resources saved from a session: report triggers ignore them
ORIGIN = "jupyternotebook_origin"
ORIGIN_SESSION = "session"
#: where the auth function leaves the session it fetched for the action
SESSION_KEY = "jupyternotebook_session"
#: a saved file is kept in memory up to this size, then on disk
SPOOL_BYTES = 8 * 1024 * 1024


class FileTooLarge(tk.ValidationError):
    """The file is bigger than ``ckan.max_resource_size``."""


def max_upload_bytes() -> int:
    return int(tk.config.get("ckan.max_resource_size")) * 1024 * 1024


def session_of(context: Context, session_id: str) -> dict[str, Any]:
    """The bridge's session, fetched once per context."""
    cached = context.get(SESSION_KEY)
    if cached and cached.get("id") == session_id:
        return cached
    try:
        session = hub_client.HubClient.from_config().get_session(session_id)
    except hub_client.NotFound:
        raise tk.ObjectNotFound(tk._("Session not found"))
    context[SESSION_KEY] = session
    return session


@validate(schema.session_extend)
def jupyternotebook_session_extend(context: Context,
                                   data_dict: DataDict) -> dict[str, Any]:
    """Move a live session's end later by the session timeout, up to the
    portal's longest session (``max_extended_age`` from its start).

    Refused (409, with ``code``) when the limit is reached
    (``extend_limit``), for guests unless the portal allows it
    (``guests_cannot_extend``), while visitors are being turned away for
    capacity (``capacity``) or when the session is not running.

    :param id: the session id
    :type id: string

    :returns: the session with its new ``expires_at`` and ``seconds_left``
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_session_extend", context, data_dict)
    try:
        return hub_client.HubClient.from_config().extend_session(
            data_dict["id"])
    except hub_client.NotFound:
        raise tk.ObjectNotFound(tk._("Session not found"))


@validate(schema.session_save)
def jupyternotebook_session_save(context: Context,
                                 data_dict: DataDict) -> dict[str, Any]:
    """Save a file of a session's home to the session's dataset: a new
    resource, or a new upload of the notebook resource the session was
    opened from.

    Needs the rights to add resources to the dataset (or to update that
    resource) as the session's own user; guests cannot save. The file must
    fit ``ckan.max_resource_size``.

    :param id: the session id
    :type id: string
    :param path: the file, relative to the session's home (not under
        ``data/``)
    :type path: string
    :param name: the resource's name (optional; default: the file name)
    :type name: string
    :param replace_resource_id: the notebook resource the session was
        opened from, to upload a new version of it instead of creating a
        resource (optional)
    :type replace_resource_id: string

    :returns: the resource
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_session_save", context, data_dict)
    session = session_of(context, data_dict["id"])
    replace_id = data_dict.get("replace_resource_id")
    if replace_id and replace_id != session.get("notebook_resource_id"):
        raise tk.ValidationError({"replace_resource_id": [tk._(
            "Only the notebook this session was opened from can be replaced;"
            " save other files as new resources.")]})
    filename = posixpath.basename(data_dict["path"].rstrip("/"))
    name = data_dict.get("name") or filename

    stream = _fetch_session_file(session["id"], data_dict["path"])
    upload = FileStorage(stream=stream, filename=filename,
                         content_type="application/octet-stream")
    inner = _as_caller(context)
    try:
        if replace_id:
            resource = tk.get_action("resource_show")(
                _as_caller(context), {"id": replace_id})
            resource.update({"upload": upload, "url": filename,
                             ORIGIN: ORIGIN_SESSION})
            if data_dict.get("name"):
                resource["name"] = name
            saved = tk.get_action("resource_update")(inner, resource)
        else:
            saved = tk.get_action("resource_create")(inner, {
                "package_id": session["dataset_id"], "name": name,
                "url": filename, "upload": upload, ORIGIN: ORIGIN_SESSION,
                "description": tk._("Saved from a Jupyter session."),
            })
    finally:
        stream.close()
    log.info("session %s: %s saved %s as resource %s of %s",
             session["id"], context.get("user"), data_dict["path"],
             saved["id"], session["dataset_id"])
    return saved


def _fetch_session_file(session_id: str, path: str) -> IO[bytes]:
    """The session's file, spooled (to disk past SPOOL_BYTES) and rewound;
    its errors as the action's: not found, too large for
    ``ckan.max_resource_size``, a path outside the home."""
    stream = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    try:
        hub_client.HubClient.from_config().session_file(
            session_id, path, stream, max_upload_bytes())
    except hub_client.NotFound:
        stream.close()
        raise tk.ObjectNotFound(tk._("There is no such file in the session."))
    except hub_client.BridgeError as err:
        stream.close()
        if err.code == "too_large":
            raise FileTooLarge({"path": [tk._(
                "The file is too large to save: this portal accepts files of"
                " up to {size} MB.").format(
                    size=tk.config.get("ckan.max_resource_size"))]})
        if err.code == "bad_path":
            raise tk.ValidationError({"path": [err.message]})
        raise
    except BaseException:
        stream.close()
        raise
    stream.seek(0)
    return stream


def _as_caller(context: Context) -> Context:
    """A fresh context for the inner actions: the same user, CKAN's own
    checks (never ``ignore_auth``)."""
    return {"model": context["model"], "session": context["session"],
            "user": context.get("user"),
            "auth_user_obj": context.get("auth_user_obj"),
            "ignore_auth": False}
