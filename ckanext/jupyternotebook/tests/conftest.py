from __future__ import annotations

import pytest

from .bridge_stub import BridgeStub


@pytest.fixture
def bridge(ckan_config, monkeypatch):
    """A stub bridge answering on a free port; CKAN is pointed at it."""
    stub = BridgeStub(token=ckan_config["ckanext.jupyternotebook.api_token"],
                      hub_url=ckan_config["ckanext.jupyternotebook.hub_url"])
    stub.start()
    monkeypatch.setitem(ckan_config, "ckanext.jupyternotebook.api_url",
                        stub.url)
    yield stub
    stub.stop()


@pytest.fixture
def bridge_down(ckan_config, monkeypatch):
    """CKAN pointed at a port where nothing listens."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setitem(ckan_config, "ckanext.jupyternotebook.api_url",
                        f"http://127.0.0.1:{port}")
    return port
