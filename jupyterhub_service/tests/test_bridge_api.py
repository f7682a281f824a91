"""The bridge's API against a real JupyterHub with the local spawner."""

from __future__ import annotations

import concurrent.futures
import sqlite3

import pytest
import requests

from dev.testing import wait_until

from .fileserver import FileServer, Route

CSV = b"city,population\nSeoul,9411000\nLisbon,545000\n"


@pytest.fixture
def files():
    srv = FileServer().start()
    srv.routes["/cities.csv"] = Route(body=CSV)
    yield srv
    srv.stop()


def csv_resource(files, rid="res-1", hash_="h1"):
    return {"id": rid, "name": "Cities", "format": "CSV", "size": len(CSV), "hash": hash_,
            "fetch_url": files.url("/cities.csv"), "source": "ckan"}



def hub_users(hub_stack) -> set[str]:
    db = sqlite3.connect(hub_stack.hub_state / "jupyterhub.sqlite")
    try:
        return {r[0] for r in db.execute("select name from users")}
    finally:
        db.close()


def session_dirs(hub_stack) -> list[str]:
    root = hub_stack.storage / "sessions"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_health_answers_200_with_token_and_401_without(hub_stack):
    url = hub_stack.bridge_url + "/api/health"
    ok = requests.get(url, headers={"Authorization": f"Bearer {hub_stack.token}"}, timeout=10)
    assert ok.status_code == 200
    assert ok.json()["status"] == "ok" and ok.json()["hub"] == "ok"
    assert requests.get(url, timeout=10).status_code == 401
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "unauthorized"


def test_openapi_document_is_served(bridge):
    doc = bridge.call("GET", "/api/openapi.json").json()
    assert "/api/sessions" in doc["paths"]


def test_malformed_session_request_is_400_invalid(bridge):
    resp = bridge.call("POST", "/api/sessions", json={"user": {"kind": "robot"}})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid"
    resp = bridge.call("POST", "/api/sessions", data=b"{not json")
    assert resp.status_code == 400


def test_launch_prepares_data_and_reuses_running_session(bridge, files, hub_stack):
    first = bridge.launch("ds-reuse", user_id="guest-a", resources=[csv_resource(files)])
    assert first.status_code == 201, first.text
    sess = first.json()
    assert sess["status"] == "ready"
    assert sess["server_name"].startswith("d-") and len(sess["server_name"]) <= 30
    again = bridge.launch("ds-reuse", user_id="guest-a", resources=[csv_resource(files)])
    assert again.status_code == 200
    assert again.json()["id"] == sess["id"]
    assert again.json()["launch_url"] != sess["launch_url"]  # a fresh ticket each time
    assert bridge.call("GET", f"/api/sessions/{sess['id']}").json()["status"] == "ready"
    assert [s["id"] for s in bridge.sessions(user_id="guest-a")] == [sess["id"]]
    # one download for both launches
    assert len(files.hits_for("/cities.csv")) == 1


def test_guest_launching_another_dataset_ends_the_previous_one(bridge, hub_stack):
    a = bridge.launch("ds-one", user_id="guest-b").json()
    b = bridge.launch("ds-two", user_id="guest-b")
    assert b.status_code == 201
    # the old session's slot is free at once; it stops in the background
    assert bridge.call("GET", f"/api/sessions/{a['id']}").json()["status"] in ("stopping", "ended")
    assert bridge.call("GET", "/api/capacity").json()["guests"]["active"] == 1
    assert wait_until(lambda: bridge.call("GET", f"/api/sessions/{a['id']}").json()["status"] == "ended")
    assert [s["dataset_id"] for s in bridge.sessions(user_id="guest-b")] == ["ds-two"]
    assert a["hub_user"] not in hub_users(hub_stack)


def test_user_gets_one_server_per_dataset_up_to_the_limit(bridge):
    bridge.put_settings(max_sessions_per_user=2)
    one = bridge.launch("ds-u1", kind="user", user_id="u-1").json()
    two = bridge.launch("ds-u2", kind="user", user_id="u-1").json()
    assert one["hub_user"] == two["hub_user"] == "ckan-u-1"
    assert one["server_name"] != two["server_name"]
    third = bridge.launch("ds-u3", kind="user", user_id="u-1")
    assert third.status_code == 429
    assert third.json()["error"] == "user_limit"
    assert int(third.headers["Retry-After"]) > 0


def test_simultaneous_guest_launches_give_exactly_the_cap(bridge, hub_stack):
    bridge.put_settings(max_guests=2)
    before_users = hub_users(hub_stack)

    def launch(i):
        return bridge.launch(f"ds-cap-{i}", user_id=f"guest-cap-{i}")

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(launch, range(4)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 201, 429, 429]
    refused = [r.json() for r in results if r.status_code == 429]
    assert {r["error"] for r in refused} == {"guest_capacity"}
    assert all(r["max"] == 2 and r["retry_after"] > 0 for r in refused)
    assert bridge.call("GET", "/api/capacity").json()["guests"] == {"active": 2, "max": 2}
    bridge.end_all()
    assert hub_users(hub_stack) == before_users
    assert session_dirs(hub_stack) == []
    assert bridge.call("GET", "/api/capacity").json()["guests"]["active"] == 0


def test_max_sessions_caps_users_and_guests_together(bridge):
    bridge.put_settings(max_sessions=1)
    assert bridge.launch("ds-m1", kind="user", user_id="u-m").status_code == 201
    refused = bridge.launch("ds-m2", user_id="guest-m")
    assert refused.status_code == 429
    assert refused.json()["error"] == "capacity"


def test_guest_rate_limit_refuses_per_address(bridge):
    bridge.put_settings(guest_rate_limit=2)
    codes = [bridge.launch(f"ds-r{i}", user_id=f"guest-r{i}", client_ip="10.9.9.9").status_code
             for i in range(3)]
    assert codes[:2] == [201, 201]
    assert codes[2] == 429
    other = bridge.launch("ds-r-other", user_id="guest-r-other", client_ip="10.9.9.8")
    assert other.status_code == 201


def test_guest_access_off_refuses_guests_but_not_users(bridge):
    bridge.put_settings(guest_access=False)
    guest = bridge.launch("ds-g", user_id="guest-off")
    assert guest.status_code == 403
    assert guest.json()["error"] == "guest_access_off"
    assert bridge.launch("ds-g", kind="user", user_id="u-g").status_code == 201


def test_settings_are_validated(bridge):
    bad = bridge.call("PUT", "/api/settings", json={"max_guests": -1, "memory_limit": "lots"})
    assert bad.status_code == 400
    assert set(bad.json()["fields"]) == {"max_guests", "memory_limit"}
    unknown = bridge.call("PUT", "/api/settings", json={"api_token": "x"})
    assert unknown.status_code == 400


def test_new_timeout_applies_to_new_sessions_only(bridge):
    import datetime as dt

    def lifetime(sess):
        start = dt.datetime.fromisoformat(sess["started_at"].replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(sess["expires_at"].replace("Z", "+00:00"))
        return (end - start).total_seconds()

    old = bridge.launch("ds-t1", kind="user", user_id="u-t").json()
    assert lifetime(old) == 1200
    doc = bridge.put_settings(timeout=600)
    assert doc["timeout"] == 600
    new = bridge.launch("ds-t2", kind="user", user_id="u-t").json()
    assert lifetime(new) == 600
    assert bridge.call("GET", f"/api/sessions/{old['id']}").json()["expires_at"] == old["expires_at"]


def test_lowering_a_limit_keeps_running_sessions(bridge):
    a = bridge.launch("ds-l1", user_id="guest-l1").json()
    bridge.launch("ds-l2", user_id="guest-l2")
    bridge.put_settings(max_guests=1)
    assert bridge.call("GET", f"/api/sessions/{a['id']}").json()["status"] == "ready"
    assert bridge.launch("ds-l3", user_id="guest-l3").status_code == 429


def test_delete_unknown_session_is_404(bridge):
    resp = bridge.call("DELETE", "/api/sessions/nope")
    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"
