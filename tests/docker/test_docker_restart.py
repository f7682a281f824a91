"""A hub restart with the docker spawner loses no session: the hub leaves
session containers running (``cleanup_servers = False``) and finds them again
from the spawners' saved state, and the restarted bridge ends nothing that
still runs. A container no record owns is removed by the reaper."""

from __future__ import annotations

import pytest

from session_harness import docker_stack, session_containers
from dev.testing import Bridge, open_lab, wait_until

pytestmark = pytest.mark.docker

HUB_ENV = {"JUPYTERNOTEBOOK_REAPER_INTERVAL": "1"}


@pytest.fixture(scope="module")
def docker_hub(images, hub_stack, docker_client, run_id):
    """Hub + bridge with the docker spawner (no CKAN: the bridge is called
    directly); hub_stack holds the machine's test-stack lock."""
    with docker_stack("restart", 8065, hub_stack, docker_client, run_id,
                      hub_env=HUB_ENV) as stack:
        yield stack


def test_a_hub_restart_keeps_docker_sessions_running_with_their_files(
        docker_hub, docker_client):
    bridge = Bridge(docker_hub.bridge_url, docker_hub.token)
    sess = bridge.launch("ds-survives", user_id="guest-survives").json()
    assert sess["status"] == "ready", sess
    lab = open_lab(sess)
    assert lab.write("kept.txt", "still here").status_code in (200, 201)
    (container,) = session_containers(docker_client, sess["id"])

    # the hub alone, as a restart or an upgrade does it (dev-stop would also
    # remove the containers)
    docker_hub.stop_process("hub")
    container.reload()
    assert container.status == "running"
    docker_hub.start_hub(**HUB_ENV)

    assert bridge.call("GET", f"/api/sessions/{sess['id']}").json()["status"] == "ready"
    assert bridge.call("GET", "/api/capacity").json()["guests"]["active"] == 1
    again = bridge.launch("ds-survives", user_id="guest-survives")
    assert again.status_code == 200 and again.json()["id"] == sess["id"]
    assert open_lab(again.json()).read("kept.txt") == b"still here"
    assert bridge.call("DELETE", f"/api/sessions/{sess['id']}").status_code == 204
    assert session_containers(docker_client, sess["id"]) == []


def test_a_container_no_record_owns_is_removed(docker_hub, docker_client):
    import sqlite3

    bridge = Bridge(docker_hub.bridge_url, docker_hub.token)
    sess = bridge.launch("ds-lost", user_id="guest-lost").json()
    assert session_containers(docker_client, sess["id"])
    db = sqlite3.connect(docker_hub.hub_state / "bridge.sqlite")
    try:
        with db:
            db.execute("delete from sessions where id = ?", (sess["id"],))
    finally:
        db.close()
    assert wait_until(lambda: session_containers(docker_client, sess["id"]) == [], timeout=90)
    # the reconcile pass that stopped the container removes the directory
    # next; the container can be gone a moment before
    assert wait_until(lambda: not (docker_hub.storage / "sessions" / sess["id"]).exists(),
                      timeout=30)
