"""Races between the flows of a session, through the real bridge and hub:
a relaunch while a stop is in progress (issue 10, item 16) and a launch
waiting on a locked database (item 14)."""

from __future__ import annotations

import concurrent.futures
import sqlite3
import time

import pytest
import requests

from dev.testing import Bridge, Lab, wait_until


def running_servers(hub_stack, hub_user: str) -> set[str]:
    """The named servers the hub's own database has running for a user."""
    db = sqlite3.connect(hub_stack.hub_state / "jupyterhub.sqlite")
    try:
        rows = db.execute(
            "select spawners.name from spawners join users on spawners.user_id = users.id"
            " where users.name = ? and spawners.server_id is not null", (hub_user,))
        return {r[0] for r in rows}
    finally:
        db.close()


def status(bridge, session_id: str) -> str:
    return bridge.call("GET", f"/api/sessions/{session_id}").json()["status"]


@pytest.mark.parametrize("relaunched", ["ds-relaunch", "ds-relaunch-other"],
                         ids=["same-dataset", "another-dataset"])
def test_a_relaunch_while_the_stop_runs_keeps_its_server(bridge, hub_stack, relaunched):
    user = {"kind": "user", "user_id": "u-relaunch"}
    first = bridge.launch("ds-relaunch", **user).json()
    assert first["status"] == "ready"
    stopper = Bridge(hub_stack.bridge_url, hub_stack.token)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        stop = pool.submit(stopper.call, "DELETE", f"/api/sessions/{first['id']}")
        # the teardown has begun: the record is no longer live, the server
        # not yet gone
        assert wait_until(lambda: status(bridge, first["id"]) != "ready", timeout=10, step=0.01)
        relaunch = bridge.launch(relaunched, **user)
        stopped = stop.result(timeout=120)

    assert stopped.status_code == 204, stopped.text
    assert relaunch.status_code == 201, relaunch.text
    new = relaunch.json()
    assert new["id"] != first["id"] and new["hub_user"] == first["hub_user"]
    assert status(bridge, first["id"]) == "ended"
    # after the stop finished, the new session's server is running in the
    # hub and JupyterLab answers through the launch URL
    assert status(bridge, new["id"]) == "ready"
    assert new["server_name"] in running_servers(hub_stack, new["hub_user"])
    http = requests.Session()
    landed = http.get(new["launch_url"], timeout=120)
    assert landed.status_code == 200, landed.url
    assert Lab.from_url(http, landed.url).status() == 200
    # nothing left to retry that could stop it later
    assert [s["id"] for s in bridge.sessions(user_id="u-relaunch")] == [new["id"]]


def test_health_answers_while_a_launch_waits_on_the_locked_database(bridge, hub_stack):
    locker = sqlite3.connect(hub_stack.hub_state / "bridge.sqlite", timeout=5,
                             isolation_level=None)
    launcher = Bridge(hub_stack.bridge_url, hub_stack.token)
    health_times = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        locker.execute("BEGIN EXCLUSIVE")
        try:
            launch = pool.submit(launcher.launch, "ds-locked", user_id="guest-locked")
            held_until = time.monotonic() + 4
            while time.monotonic() < held_until:
                started = time.monotonic()
                health = bridge.call("GET", "/api/health", timeout=10)
                health_times.append(time.monotonic() - started)
                assert health.status_code == 200
            # the launch waited on the database all along
            assert not launch.done()
        finally:
            locker.close()  # ends the transaction, whatever happened
        launched = launch.result(timeout=120)
    assert launched.status_code == 201, launched.text
    assert len(health_times) >= 4
    assert max(health_times) < 1.0, health_times
