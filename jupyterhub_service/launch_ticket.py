"""One-time launch tickets: the only way a browser gets into a server.

A ticket is ``base64url(payload).base64url(hmac_sha256(payload))``. The
payload names the hub user, the server and the path to open (``next``), the
time it was issued and a random nonce. The authenticator accepts it at most
``MAX_AGE`` seconds after issue, once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

MAX_AGE = 60


class TicketError(Exception):
    """The ticket is missing, forged, expired or malformed."""


def ticket_key(api_token: str) -> bytes:
    # A key of its own, derived so that operators manage one secret.
    return hmac.new(api_token.encode(), b"ckanext-jupyternotebook launch ticket", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, hub_user: str, server_name: str, next_path: str, now: float | None = None) -> str:
    payload = {
        "u": hub_user,
        "s": server_name,
        "n": next_path,
        "iat": int(time.time() if now is None else now),
        "nonce": secrets.token_urlsafe(18),
    }
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    sig = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}"


def verify(key: bytes, ticket: str | None, now: float | None = None) -> dict:
    """The payload of a genuine, fresh ticket; TicketError otherwise.

    Whether its nonce was used before is the caller's check (it needs the
    shared store)."""
    if not ticket or ticket.count(".") != 1:
        raise TicketError("missing or malformed ticket")
    body, sig = ticket.split(".")
    expected = _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(sig.encode(), expected.encode()):
        raise TicketError("invalid signature")
    try:
        payload = json.loads(_unb64(body))
        iat = int(payload["iat"])
        for k in ("u", "s", "n", "nonce"):
            if not isinstance(payload[k], str):
                raise TypeError(k)
    except (ValueError, KeyError, TypeError):
        raise TicketError("malformed ticket") from None
    age = (time.time() if now is None else now) - iat
    if age > MAX_AGE or age < -5:
        raise TicketError("expired ticket")
    return payload
