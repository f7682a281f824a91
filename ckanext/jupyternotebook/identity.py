"""Who is launching: a CKAN user, or a guest known by a random id kept in
CKAN's session cookie (never a hash of address and browser), and the client
address guests are counted by."""
from __future__ import annotations

import ipaddress
import logging
import secrets
import threading
import time
from functools import lru_cache
from typing import Optional

import flask

import ckan.plugins.toolkit as tk

from . import settings

log = logging.getLogger(__name__)

_GUEST_KEY = "jupyternotebook_guest_id"

#: Redis key holding the last untrusted peer that sent X-Forwarded-For, for
#: the admin page (every CKAN process writes it; it expires after a day).
UNTRUSTED_FORWARD_KEY = "ckanext.jupyternotebook.untrusted_forwarded_for"
_WARN_EVERY = 3600.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def guest_id(create: bool = True) -> str | None:
    """This browser's guest id; made and stored on first use."""
    if not flask.has_request_context():
        return None
    value = flask.session.get(_GUEST_KEY)
    if not value and create:
        value = secrets.token_hex(12)
        flask.session[_GUEST_KEY] = value
    return value


@lru_cache(maxsize=8)
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """``trusted_proxies`` as networks; ``configure()`` has checked them."""
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _address(text: str) -> Optional[Address]:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in net for net in networks)


def resolve(peer: str, forwarded: list[str],
            networks: tuple[Network, ...]) -> str:
    """The client's address, from the TCP peer and ``X-Forwarded-For``.

    The header is believed only when the peer is a trusted proxy, and then
    read from the right: each hop a trusted proxy appended is skipped, and
    the first untrusted address is the client. A hop that is not an address
    stops the walk at the last proxy that is known to be real, so garbage a
    client sends cannot choose its own bucket.
    """
    current = _address(peer)
    if not _trusted(current, networks):
        return peer
    hops = [h.strip() for value in forwarded for h in value.split(",")]
    for hop in reversed([h for h in hops if h]):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, networks):
            break
    return str(current)


def client_ip() -> str:
    """The address guests are counted by (rate limit, per-address cap)."""
    if not flask.has_request_context():
        return ""
    request = tk.request
    peer = request.remote_addr or ""
    forwarded = request.headers.getlist("X-Forwarded-For")
    networks = trusted_networks(tuple(settings.get("trusted_proxies")))
    if forwarded and not _trusted(_address(peer), networks):
        _report_untrusted(peer)
    return resolve(peer, forwarded, networks)


_warned: dict[str, float] = {}
_warned_lock = threading.Lock()


def _report_untrusted(peer: str) -> None:
    """Warn (once an hour per peer and process) that a proxy is not trusted:
    every guest behind it then shares its address and one rate bucket."""
    now = time.monotonic()
    with _warned_lock:
        if now - _warned.get(peer, -_WARN_EVERY) < _WARN_EVERY:
            return
        if len(_warned) > 1000:  # bounded: a warning is not worth memory
            _warned.clear()
        _warned[peer] = now
    log.warning(
        "X-Forwarded-For arrived from %s, which is not in %s; it is ignored, "
        "so every guest behind that proxy shares its address and rate limit",
        peer, settings.key("trusted_proxies"))
    try:
        from ckan.lib.redis import connect_to_redis
        connect_to_redis().set(UNTRUSTED_FORWARD_KEY,
                               f"{int(time.time())} {peer}", ex=86400)
    except Exception:  # the warning is advice; never fail a launch on it
        log.debug("could not record the untrusted proxy", exc_info=True)


def untrusted_forwarder() -> Optional[dict]:
    """The last peer (within a day) whose X-Forwarded-For was ignored."""
    try:
        from ckan.lib.redis import connect_to_redis
        value = connect_to_redis().get(UNTRUSTED_FORWARD_KEY)
    except Exception:
        return None
    if not value:
        return None
    when, _, peer = (value.decode() if isinstance(value, bytes)
                     else str(value)).partition(" ")
    return {"peer": peer, "seen_at": int(when) if when.isdigit() else None}
