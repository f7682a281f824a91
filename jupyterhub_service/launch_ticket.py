"""One-time launch tickets: the only way a browser gets into a server.

A ticket is a token of ``signing``: its payload names the hub user (``u``),
the server (``s``) and the path to open (``n``), the time it was issued
(``iat``) and a random nonce. The authenticator accepts it at most
``MAX_AGE`` seconds after issue, once.
"""

from __future__ import annotations

import secrets
import time

from . import signing

MAX_AGE = 60


class TicketError(Exception):
    """The ticket is missing, forged, expired or malformed."""


def ticket_key(api_token: str) -> bytes:
    # A key of its own, derived so that operators manage one secret.
    return signing.derive_key(api_token, b"ckanext-jupyternotebook launch ticket")


def issue(key: bytes, hub_user: str, server_name: str, next_path: str, now: float | None = None) -> str:
    return signing.dumps(key, {
        "u": hub_user,
        "s": server_name,
        "n": next_path,
        "iat": int(time.time() if now is None else now),
        "nonce": secrets.token_urlsafe(18),
    })


def verify(key: bytes, ticket: object, now: float | None = None, max_age: int = MAX_AGE) -> dict:
    """The payload of a genuine, fresh ticket; TicketError otherwise.

    Only a string is a ticket. Whether its nonce was used before is the
    caller's check (it needs the shared store)."""
    try:
        payload = signing.loads(key, ticket)
    except signing.BadSignature:
        raise TicketError("invalid signature") from None
    except signing.BadToken:
        raise TicketError("missing or malformed ticket") from None
    try:
        iat = int(payload["iat"])
        for k in ("u", "s", "n", "nonce"):
            if not isinstance(payload[k], str) or not payload[k]:
                raise TypeError(k)
    except (ValueError, KeyError, TypeError):
        raise TicketError("malformed ticket") from None
    age = (time.time() if now is None else now) - iat
    if age > max_age or age < -5:
        raise TicketError("expired ticket")
    return payload
