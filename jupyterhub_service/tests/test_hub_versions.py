"""What the bridge does differently on JupyterHub 5 and 6, held through the
real hub the suite runs (`make test`: 6; `make test-matrix`: 5 as well)."""

from __future__ import annotations

import json
import sqlite3

import requests


def _server_options(hub_stack, hub_user: str, server_name: str) -> dict:
    db = sqlite3.connect(hub_stack.hub_state / "jupyterhub.sqlite")
    try:
        (raw,) = db.execute(
            "SELECT spawners.user_options FROM spawners JOIN users ON spawners.user_id = users.id"
            " WHERE users.name = ? AND spawners.name = ?", (hub_user, server_name)).fetchone()
    finally:
        db.close()
    return json.loads(raw)


def test_the_hub_keeps_the_bridges_options_as_the_servers_user_options(bridge, hub_stack):
    # hub 6 takes {"user_options": ...}, 5.x the options as the body: sent
    # the other way, the spawner would find its options one level down
    resp = bridge.launch("ds-hub-options")
    assert resp.status_code == 201, resp.text
    session = resp.json()
    options = _server_options(hub_stack, session["hub_user"], session["server_name"])
    assert options["session_id"] == session["id"]
    assert options["dataset_id"] == "ds-hub-options"
    assert "user_options" not in options


def test_the_hub_under_test_is_the_one_installed_in_the_suites_environment(hub_stack):
    # the matrix's claims rest on it: `.venvs/hub5/bin/pytest` tests hub 5
    from importlib.metadata import version

    resp = requests.get(hub_stack.hub_url.rstrip("/") + "/hub/api/", timeout=30)
    assert resp.status_code == 200
    assert resp.json()["version"] == version("jupyterhub")
    assert resp.headers["X-JupyterHub-Version"] == version("jupyterhub")
