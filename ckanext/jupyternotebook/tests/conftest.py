"""Fixtures of the CKAN-side tests of the launch flow.

``session_bridge`` is the stand-in of the bridge API (tests/bridge_stub.py,
held to the bridge's openapi.json) for tests of CKAN's own behaviour; the real bridge and hub are exercised by
the top-level ``bridge`` / ``hub_stack`` fixtures and the end-to-end tests.
"""
from __future__ import annotations

import socket

import pytest

from .bridge_stub import BridgeStub
from .ckan_compat import make_app  # noqa: F401 (fixture: cookies kept on CKAN 2.10/2.11)


@pytest.fixture
def session_bridge(ckan_config, monkeypatch):
    """A stub bridge answering on a free port; CKAN is pointed at it."""
    stub = BridgeStub(
        token=ckan_config["ckanext.jupyternotebook.api_token"],
        hub_url=ckan_config["ckanext.jupyternotebook.hub_url"])
    stub.start()
    monkeypatch.setitem(ckan_config, "ckanext.jupyternotebook.api_url",
                        stub.url)
    yield stub
    stub.stop()
    assert stub.violations == [], "CKAN sent what the bridge refuses"


@pytest.fixture
def bridge_down(ckan_config, monkeypatch):
    """CKAN pointed at a port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setitem(ckan_config, "ckanext.jupyternotebook.api_url",
                        f"http://127.0.0.1:{port}")
    return port
