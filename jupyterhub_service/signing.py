"""Signed tokens: ``base64url(JSON payload) "." base64url(HMAC-SHA256)``.

One place for the encoding and the signature check of everything this
project signs itself: the bridge's launch tickets, the hub's pending login
switches and CKAN's fetch grants. Standard library only, because both the
CKAN plugin and the hub import it. What a payload means (who, which
resources, until when) stays with its caller; this module only says whether
a token is genuine and hands back the payload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


class BadToken(Exception):
    """The token is missing, malformed or not signed with this key."""


class BadSignature(BadToken):
    """Well formed, but signed with another key or altered."""


def derive_key(secret: str | bytes, purpose: bytes) -> bytes:
    """A key of its own for one purpose, derived from a secret the operator
    already manages, so a token of one kind is never valid as another."""
    if isinstance(secret, str):
        secret = secret.encode()
    return hmac.new(secret, purpose, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest())


def dumps(key: bytes, payload: dict) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_signature(key, body)}"


def loads(key: bytes, token: object) -> dict:
    """The payload of a token signed with ``key``; BadToken otherwise."""
    if not isinstance(token, str) or token.count(".") != 1:
        raise BadToken("missing or malformed")
    body, sig = token.split(".")
    try:
        expected = _signature(key, body)
    except UnicodeEncodeError:
        raise BadToken("malformed") from None
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
        raise BadSignature("invalid signature")
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        raise BadToken("malformed") from None
    if not isinstance(payload, dict):
        raise BadToken("malformed")
    return payload
