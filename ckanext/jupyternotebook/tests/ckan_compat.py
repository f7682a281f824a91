"""Test fixtures that make CKAN 2.10 and 2.11 behave as 2.12 where the tests
rely on it (see ckanext/jupyternotebook/compat.py for the plugin's side)."""
from __future__ import annotations

import pytest


def _keep_cookies(app):
    """CKAN 2.12's test app sends every request through one client; 2.10's
    and 2.11's open a new client, with an empty cookie jar, for each request,
    so a form posted with the CSRF token of the page before it would lose the
    session that token belongs to ("The CSRF session token is missing")."""
    if not hasattr(app, "client"):  # CKAN 2.10, 2.11
        client = app.test_client()
        app.test_client = lambda use_cookies=True: client
    return app


@pytest.fixture
def make_app(make_app):
    """CKAN's make_app (and so its ``app``), keeping cookies from one
    request to the next on every CKAN line."""
    return lambda *args, **kwargs: _keep_cookies(make_app(*args, **kwargs))
