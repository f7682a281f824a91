"""A launch through the real CKAN and bridge with the docker spawner: the
visitor lands in JupyterLab in a container with its limits, and ending the
session leaves nothing of it behind."""

from __future__ import annotations

import pytest

from session_harness import assert_confined, docker_stack, session_containers
from dev.stack import ROOT
from dev.testing import Bridge, Browser, Lab

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_portal(images, hub_stack, docker_client, run_id):
    with docker_stack("launch", 8060, hub_stack, docker_client, run_id,
                      env={"CKAN_JUPYTERHUB_PERCENTAGE_CPU": "50"},
                      hub_env={"JUPYTERNOTEBOOK_REAPER_INTERVAL": "1"},
                      ckan={"ckan_port": 5060, "ckan_db": "ckan_docker", "redis_db": "4"}) as stack_and_seed:
        yield stack_and_seed


def test_a_launch_through_ckan_runs_in_a_limited_container_and_ends_without_a_trace(
        docker_portal, docker_client):
    stack, seed = docker_portal
    bridge = Bridge(stack.bridge_url, stack.token)
    volumes_before = {v.name for v in docker_client.volumes.list()}
    browser = Browser()
    final = browser.open_in_jupyter(stack.ckan_url, seed["dataset"])
    assert final.status_code == 200, final.text[:300]
    lab = Lab.from_url(browser.http, final.url)
    data = lab.listing("data")
    csv = next(n for n in data if n.endswith(".csv"))
    assert lab.read(f"data/{csv}") == (ROOT / "dev" / "demo" / "cities.csv").read_bytes()
    assert lab.write("scratch.txt", "gone soon").status_code in (200, 201)

    (sess,) = bridge.sessions()
    (container,) = session_containers(docker_client, sess["id"])
    assert_confined(container, memory=512 * 1024**2, nano_cpus=500_000_000)

    out, err = lab.execute(
        "try:\n    open('data/new.txt', 'w')\n    print('WROTE')\nexcept OSError:\n    print('refused')\n")
    assert err is None and "refused" in out

    assert bridge.call("DELETE", f"/api/sessions/{sess['id']}").status_code == 204
    assert session_containers(docker_client, sess["id"]) == []
    assert {v.name for v in docker_client.volumes.list()} <= volumes_before
    assert not (stack.storage / "sessions" / sess["id"]).exists()
    # the home's image file and its mount went with the container
    assert list((stack.storage / "session-homes").glob(f"{sess['id']}*")) == []
    assert not any(sess["id"] in line for line in open("/proc/self/mounts"))

    again = browser.open_in_jupyter(stack.ckan_url, seed["dataset"])
    assert again.status_code == 200
    lab2 = Lab.from_url(browser.http, again.url)
    assert "scratch.txt" not in lab2.listing()
    bridge.end_all()
