"""Who is launching: a CKAN user, or a guest known by a random id kept in
CKAN's session cookie (never a hash of address and browser)."""
from __future__ import annotations

import secrets

import flask

import ckan.plugins.toolkit as tk

_GUEST_KEY = "jupyternotebook_guest_id"


def guest_id(create: bool = True) -> str | None:
    """This browser's guest id; made and stored on first use."""
    if not flask.has_request_context():
        return None
    value = flask.session.get(_GUEST_KEY)
    if not value and create:
        value = secrets.token_hex(12)
        flask.session[_GUEST_KEY] = value
    return value


def client_ip() -> str:
    if not flask.has_request_context():
        return ""
    return tk.request.remote_addr or ""
