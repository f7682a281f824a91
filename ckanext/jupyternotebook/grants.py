"""Fetch grants: short-lived, HMAC-signed permissions to download resources.

CKAN hands the bridge one grant per uploaded resource. The bridge presents it
at ``/jupyter/fetch/<resource_id>?grant=...``; nothing else lets the sidecar
read a file it could not read anonymously.

A grant is a token of ``jupyterhub_service.signing``: its payload names the
resource ids (``r``) and the expiry as a Unix time (``e``).
"""
from __future__ import annotations

import time
from typing import Iterable

import ckan.plugins.toolkit as tk

from jupyterhub_service import signing

from . import settings

_PURPOSE = b"ckanext.jupyternotebook fetch grant v1"


class InvalidGrant(Exception):
    pass


def _key() -> bytes:
    # A key of our own, derived from CKAN's SECRET_KEY (formerly
    # beaker.session.secret), so a grant is never a valid session cookie or
    # token signature elsewhere in CKAN.
    secret = tk.config.get("SECRET_KEY")
    if not secret:
        raise InvalidGrant("CKAN has no SECRET_KEY to sign grants with")
    return signing.derive_key(str(secret), _PURPOSE)


def sign(resource_ids: Iterable[str], ttl: int | None = None,
         now: float | None = None) -> str:
    """A grant for these resources, valid for ``ttl`` seconds."""
    ttl = settings.get("grant_ttl") if ttl is None else ttl
    now = time.time() if now is None else now
    return signing.dumps(_key(), {"r": sorted(set(resource_ids)),
                                  "e": int(now + ttl)})


def verify(grant: str | None, resource_id: str,
           now: float | None = None) -> None:
    """Raise InvalidGrant unless the grant is genuine, current and names
    the resource."""
    try:
        body = signing.loads(_key(), grant)
    except signing.BadSignature as err:
        raise InvalidGrant("bad signature") from err
    except signing.BadToken as err:
        raise InvalidGrant("missing or malformed grant") from err
    try:
        resource_ids, expires = body["r"], float(body["e"])
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidGrant("malformed grant") from err
    if not isinstance(resource_ids, list):
        raise InvalidGrant("malformed grant")
    if (time.time() if now is None else now) >= expires:
        raise InvalidGrant("expired grant")
    if resource_id not in resource_ids:
        raise InvalidGrant("grant is for other resources")
