"""Fetch grants: short-lived, HMAC-signed permissions to download resources.

CKAN hands the bridge one grant per uploaded resource. The bridge presents it
at ``/jupyter/fetch/<resource_id>?grant=...``; nothing else lets the sidecar
read a file it could not read anonymously.

A grant is ``<payload>.<signature>``, both base64url: the payload is JSON
naming the resource ids (``r``) and the expiry as a Unix time (``e``).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Iterable

import ckan.plugins.toolkit as tk

from . import config as settings

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
    return hmac.new(str(secret).encode(), _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: str) -> str:
    return _b64(hmac.new(_key(), payload.encode("ascii"),
                         hashlib.sha256).digest())


def sign(resource_ids: Iterable[str], ttl: int | None = None,
         now: float | None = None) -> str:
    """A grant for these resources, valid for ``ttl`` seconds."""
    ttl = settings.get("grant_ttl") if ttl is None else ttl
    now = time.time() if now is None else now
    body = {"r": sorted(set(resource_ids)), "e": int(now + ttl)}
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(payload)}"


def verify(grant: str | None, resource_id: str,
           now: float | None = None) -> None:
    """Raise InvalidGrant unless the grant is genuine, current and names
    the resource."""
    if not grant or grant.count(".") != 1:
        raise InvalidGrant("missing or malformed grant")
    payload, signature = grant.split(".")
    try:
        expected = _sign(payload)
    except UnicodeEncodeError as err:
        raise InvalidGrant("malformed grant") from err
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8",
                                                                   "replace")):
        raise InvalidGrant("bad signature")
    try:
        body = json.loads(_unb64(payload))
        resource_ids, expires = body["r"], float(body["e"])
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidGrant("malformed grant") from err
    if (time.time() if now is None else now) >= expires:
        raise InvalidGrant("expired grant")
    if resource_id not in resource_ids:
        raise InvalidGrant("grant is for other resources")
