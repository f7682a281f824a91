"""The bridge client against a real (stub) HTTP server: what each answer
becomes."""
from __future__ import annotations

import socket

import pytest


@pytest.fixture
def stub():
    from .bridge_stub import BridgeStub
    server = BridgeStub(token="t0k").start()
    yield server
    server.stop()
    assert server.violations == []


#: a launch request as CKAN sends it (the stub holds requests to openapi.json)
REQUEST = {
    "user": {"kind": "user", "id": "u1", "name": "ann"},
    "client_ip": "127.0.0.1",
    "dataset": {"id": "d1", "name": "cities", "title": "Cities",
                "url": "http://ckan/dataset/cities"},
    "resources": []}


def _client(url, token="t0k", **kwargs):
    from ckanext.jupyternotebook.hub_client import HubClient
    return HubClient(url, token, **kwargs)


def test_every_call_carries_the_bearer_token(stub):
    _client(stub.url).capacity()
    assert stub.requests[-1]["headers"]["Authorization"] == "Bearer t0k"


def test_a_wrong_token_is_a_bridge_error(stub):
    from ckanext.jupyternotebook.hub_client import BridgeError, \
        HubUnavailable
    with pytest.raises(BridgeError) as caught:
        _client(stub.url, token="wrong").capacity()
    assert caught.value.status == 401
    assert not isinstance(caught.value, HubUnavailable)


def test_create_list_get_delete_a_session(stub):
    client = _client(stub.url)
    session = client.create_session(REQUEST)
    assert session["launch_url"].startswith("http://127.0.0.1:8050/hub/login")
    assert [s["id"] for s in client.list_sessions("u1")] == [session["id"]]
    assert stub.requests[-1]["query"] == {"user_id": ["u1"]}
    assert client.get_session(session["id"])["dataset_id"] == "d1"
    assert client.delete_session(session["id"]) is None
    assert client.list_sessions("u1") == []


def test_guest_capacity_429_carries_code_numbers_and_retry_after(stub):
    from ckanext.jupyternotebook.hub_client import CapacityReached
    stub.respond("POST", "/api/sessions", 429, {
        "error": "guest_capacity", "message": "All 2 guest sessions in use",
        "retry_after": 120, "max": 2, "active": 2}, {"Retry-After": "120"})
    with pytest.raises(CapacityReached) as caught:
        _client(stub.url).create_session(REQUEST)
    err = caught.value
    assert (err.code, err.retry_after, err.max, err.active) == \
        ("guest_capacity", 120, 2, 2)
    assert err.message == "All 2 guest sessions in use"


def test_retry_after_falls_back_to_the_header(stub):
    from ckanext.jupyternotebook.hub_client import CapacityReached
    stub.respond("POST", "/api/sessions", 429,
                 {"error": "rate_limited", "message": "slow down"},
                 {"Retry-After": "42"})
    with pytest.raises(CapacityReached) as caught:
        _client(stub.url).create_session(REQUEST)
    assert caught.value.retry_after == 42


@pytest.mark.parametrize("status, code", [(503, "hub_unavailable"),
                                          (504, "start_timeout")])
def test_503_and_504_mean_hub_unavailable(stub, status, code):
    from ckanext.jupyternotebook.hub_client import HubUnavailable
    stub.respond("POST", "/api/sessions", status,
                 {"error": code, "message": "no"})
    with pytest.raises(HubUnavailable) as caught:
        _client(stub.url).create_session(REQUEST)
    assert caught.value.code == code


def test_404_is_not_found(stub):
    from ckanext.jupyternotebook.hub_client import NotFound
    with pytest.raises(NotFound):
        _client(stub.url).get_session("nope")


def test_400_invalid_is_a_bridge_error_with_its_code(stub):
    from ckanext.jupyternotebook.hub_client import BridgeError
    stub.respond("POST", "/api/sessions", 400,
                 {"error": "invalid", "message": "dataset.id is required"})
    with pytest.raises(BridgeError) as caught:
        _client(stub.url).create_session(REQUEST)
    assert (caught.value.code, caught.value.message) == \
        ("invalid", "dataset.id is required")


def test_a_refused_connection_is_hub_unavailable():
    from ckanext.jupyternotebook.hub_client import HubUnavailable
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HubUnavailable):
        _client(f"http://127.0.0.1:{port}").capacity()


def test_a_bridge_that_never_answers_is_hub_unavailable():
    from ckanext.jupyternotebook.hub_client import HubUnavailable
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the connection, never answers
        port = silent.getsockname()[1]
        with pytest.raises(HubUnavailable) as caught:
            _client(f"http://127.0.0.1:{port}", timeout=0.5).capacity()
    assert caught.value.code == "timeout"


def test_a_non_json_answer_is_a_bridge_error(stub):
    from ckanext.jupyternotebook.hub_client import BridgeError
    stub.respond("GET", "/api/capacity", 200, b"<html>proxy page</html>")
    with pytest.raises(BridgeError):
        _client(stub.url).capacity()


def test_a_download_within_its_cap_is_written_whole(stub):
    import io
    body = bytes(range(256)) * 20
    stub.respond("GET", "/api/runs/r1/notebook", 200, body,
                 {"Content-Type": "application/octet-stream"})
    dest = io.BytesIO()
    assert _client(stub.url).download_run_file("r1", "notebook", dest, max_bytes=len(body)) \
        == len(body)
    assert dest.getvalue() == body


def test_a_download_past_its_cap_is_too_large_whatever_the_bridge_sends(stub):
    import io
    from ckanext.jupyternotebook.hub_client import BridgeError
    stub.respond("GET", "/api/sessions/s1/files", 200, b"x" * 5000,
                 {"Content-Type": "application/octet-stream"})
    dest = io.BytesIO()
    with pytest.raises(BridgeError) as caught:
        _client(stub.url).session_file("s1", "big.bin", dest, max_bytes=1000)
    assert (caught.value.code, caught.value.status) == ("too_large", 413)
    assert len(dest.getvalue()) <= 1000
    assert stub.requests[-1]["query"] == {"path": ["big.bin"], "max_bytes": ["1000"]}


def test_a_refused_download_raises_the_bridges_error_before_any_byte(stub):
    import io
    from ckanext.jupyternotebook.hub_client import NotFound
    stub.respond("GET", "/api/runs/r1/artifacts/chart.png", 404,
                 {"error": "no such artifact", "code": "not_found"})
    dest = io.BytesIO()
    with pytest.raises(NotFound):
        _client(stub.url).download_run_file("r1", "artifacts/chart.png", dest, max_bytes=100)
    assert dest.getvalue() == b""
