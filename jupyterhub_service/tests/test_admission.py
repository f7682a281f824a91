"""Admission through the real bridge and hub: concurrent launches join or
are refused atomically, with database calls awaited under the admission
lock (issue 10, items 15 and 8)."""

from __future__ import annotations

import concurrent.futures
import sqlite3

import pytest

from jupyterhub_service.admission import RateLimiter
from dev.testing import Bridge


def hub_users(hub_stack) -> set[str]:
    db = sqlite3.connect(hub_stack.hub_state / "jupyterhub.sqlite")
    try:
        return {r[0] for r in db.execute("select name from users")}
    finally:
        db.close()


def session_dirs(hub_stack) -> list[str]:
    root = hub_stack.storage / "sessions"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def launch_together(hub_stack, launches: list[dict]) -> list:
    """POST every launch at once, each from a client of its own."""
    def one(kwargs):
        return Bridge(hub_stack.bridge_url, hub_stack.token).launch(**kwargs)

    with concurrent.futures.ThreadPoolExecutor(len(launches)) as pool:
        return list(pool.map(one, launches))


@pytest.mark.parametrize("kind", ["guest", "user"])
def test_simultaneous_launches_of_one_dataset_by_one_visitor_join_one_session(
        bridge, hub_stack, kind):
    visitor = f"{kind}-join"
    results = launch_together(
        hub_stack, [{"dataset_id": "ds-join", "kind": kind, "user_id": visitor}] * 8)
    codes = sorted(r.status_code for r in results)
    assert codes == [200] * 7 + [201], [r.text for r in results]
    sessions = [r.json() for r in results]
    assert len({s["id"] for s in sessions}) == 1
    assert {s["status"] for s in sessions} == {"ready"}
    assert [s["id"] for s in bridge.sessions(user_id=visitor)] == [sessions[0]["id"]]


def test_twice_as_many_simultaneous_guests_as_slots_get_exactly_the_slots(bridge, hub_stack):
    slots = 4
    bridge.put_settings(max_guests=slots)
    before_users = hub_users(hub_stack)
    results = launch_together(
        hub_stack, [{"dataset_id": f"ds-2n-{i}", "user_id": f"guest-2n-{i}"}
                    for i in range(2 * slots)])
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * slots + [429] * slots, [r.text for r in results]
    assert {r.json()["error"] for r in results if r.status_code == 429} == {"guest_capacity"}
    admitted = [r.json() for r in results if r.status_code == 201]
    assert {s["status"] for s in admitted} == {"ready"}
    assert len({s["hub_user"] for s in admitted}) == slots
    assert bridge.call("GET", "/api/capacity").json()["guests"] == {"active": slots, "max": slots}

    for s in admitted:
        assert bridge.call("DELETE", f"/api/sessions/{s['id']}").status_code == 204
    assert hub_users(hub_stack) == before_users
    assert session_dirs(hub_stack) == []
    assert bridge.call("GET", "/api/capacity").json()["guests"]["active"] == 0


# -- item 8: guests per address, and a rate limiter of bounded memory --------


def test_guests_from_one_address_beyond_the_cap_get_429_address_limit(bridge):
    bridge.put_settings(max_guests_per_address=2)
    codes = [bridge.launch(f"ds-addr-{i}", user_id=f"guest-addr-{i}",
                           client_ip="10.7.7.7").status_code for i in range(2)]
    assert codes == [201, 201]
    third = bridge.launch("ds-addr-3", user_id="guest-addr-3", client_ip="10.7.7.7")
    assert third.status_code == 429
    body = third.json()
    assert body["error"] == "address_limit"
    assert body["max"] == 2 and body["active"] == 2
    assert int(third.headers["Retry-After"]) > 0
    # a guest already at the address goes back to the running session
    back = bridge.launch("ds-addr-0", user_id="guest-addr-0", client_ip="10.7.7.7")
    assert back.status_code == 200
    # ...and may switch dataset: that replaces the guest's own session
    switched = bridge.launch("ds-addr-other", user_id="guest-addr-0", client_ip="10.7.7.7")
    assert switched.status_code == 201, switched.text
    # another address still gets in
    other = bridge.launch("ds-addr-4", user_id="guest-addr-4", client_ip="10.7.7.8")
    assert other.status_code == 201
    # logged-in users behind the same address are not guests
    user = bridge.launch("ds-addr-5", kind="user", user_id="u-addr", client_ip="10.7.7.7")
    assert user.status_code == 201


def test_rate_limiter_forgets_the_oldest_addresses_beyond_its_memory():
    limiter = RateLimiter(memory=100)
    for i in range(1000):
        assert limiter.check(f"10.0.{i // 256}.{i % 256}", per_minute=1) == 0
        assert len(limiter.hits) <= 100
    # the most recent addresses are remembered (and limited), the oldest
    # forgotten (and allowed again)
    assert limiter.check("10.0.3.231", per_minute=1) > 0
    assert limiter.check("10.0.0.0", per_minute=1) == 0
    assert len(limiter.hits) == 100
