"""Save to portal, started in JupyterLab: the bridge asks CKAN to save one
file of a session's home as a resource of the session's dataset.

The bridge holds no CKAN credential of any user. It calls CKAN's
``POST /jupyter/api/session-save`` with the shared bridge token, naming only
the session; CKAN asks the bridge who the session belongs to, reads the file
from the bridge (``GET /api/sessions/{id}/files``) and runs
``jupyternotebook_session_save`` as that user, with CKAN's own permission
checks and ``ckan.max_resource_size``. So the most a hostile session can do
through this path is save files of its own home into its own dataset as its
own user, which the user could do anyway.

CKAN's base URL comes from the session request (``portal_url``: the URL
CKAN's own fetch links use, reachable from the bridge).
"""

from __future__ import annotations

import asyncio
import json

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .errors import BridgeError
from .settings import Settings
from .store import SessionRecord

SAVE_PATH = "/jupyter/api/session-save"
#: CKAN reads the file from the bridge and stores it within this
SAVE_TIMEOUT = 300


def portal_unavailable(message: str = "The data portal is not answering.") -> BridgeError:
    return BridgeError(503, "portal_unavailable", message)


def resource_url(rec: SessionRecord, resource: dict) -> str:
    """The resource's page on the portal, for the visitor."""
    return f"{(rec.dataset_url or '').rstrip('/')}/resource/{resource.get('id', '')}"


async def save_to_portal(settings: Settings, session_rec: SessionRecord, path: str,
                         name: str | None = None, replace: bool = False) -> dict:
    """Save ``path`` (relative to the session's home) as a new resource of the
    dataset, or with ``replace`` as a new upload of the notebook resource the
    session was opened from. Returns the CKAN resource; raises BridgeError
    with CKAN's refusal (``login_required``, ``not_authorized``,
    ``too_large``, ``bad_path``, ``file_not_found``, ...) or 503
    ``portal_unavailable``."""
    if not session_rec.portal_url:
        raise BridgeError(409, "no_portal",
                          "This session was started before saving was possible; "
                          "open the dataset again to save from a new session.")
    body = {"session_id": session_rec.id, "path": path, "replace": bool(replace)}
    if name:
        body["name"] = name
    req = HTTPRequest(
        session_rec.portal_url.rstrip("/") + SAVE_PATH,
        method="POST",
        headers={"Authorization": f"Bearer {settings.api_token}",
                 "Content-Type": "application/json", "Accept": "application/json"},
        body=json.dumps(body),
        request_timeout=SAVE_TIMEOUT,
        connect_timeout=10,
        follow_redirects=False,
    )
    try:
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    except (OSError, asyncio.TimeoutError, HTTPClientError):
        raise portal_unavailable() from None
    if resp.code == 599:
        raise portal_unavailable()
    try:
        answer = json.loads(resp.body or b"{}")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise portal_unavailable(f"The data portal sent an unexpected answer ({resp.code}).")
    if resp.code == 200 and isinstance(answer.get("resource"), dict):
        return answer["resource"]
    if resp.code < 400:
        raise portal_unavailable(f"The data portal sent an unexpected answer ({resp.code}).")
    status = resp.code if resp.code in (400, 403, 404, 409, 413) else 502
    raise BridgeError(status, str(answer.get("error") or "portal_error"),
                      str(answer.get("message") or "The data portal refused to save the file."))
