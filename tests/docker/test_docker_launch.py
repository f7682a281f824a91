"""A launch through the real CKAN and bridge with the docker spawner: the
visitor lands in JupyterLab in a container with its limits, and ending the
session leaves nothing of it behind."""

from __future__ import annotations

import shutil

import pytest

from session_harness import assert_confined, remove_sessions_network, session_containers
from stack import ROOT, Stack
from testing import Bridge, Browser, Lab

pytestmark = pytest.mark.docker

@pytest.fixture(scope="module")
def docker_portal(images, hub_stack, docker_client, run_id):
    # hub_stack holds the machine's test-stack lock; this stack runs beside it
    stack = Stack(
        directory=ROOT / ".test-stack-docker",
        ckan_port=5060, hub_port=8060, bridge_port=6060, solr_port=hub_stack.solr_port,
        hub_api_port=8061, proxy_api_port=8062, ckan_db="ckan_docker", redis_db="4",
        api_token=hub_stack.token,
        extra_env={"CKAN_JUPYTERHUB_SPAWNER": "docker", "CKAN_JUPYTERHUB_GUEST_RATE": "1000",
                   "CKAN_JUPYTERHUB_MEMORY_LIMIT": "512M", "CKAN_JUPYTERHUB_PERCENTAGE_CPU": "50",
                   # a network of this run's own, removed at the end
                   "JUPYTERNOTEBOOK_SESSIONS_NETWORK": f"jn-test-sessions-launch-{run_id}"},
    )
    stack.stop()
    for stale in ("storage", "hub", "logs"):
        shutil.rmtree(stack.directory / stale, ignore_errors=True)
    stack.prepare()
    seed = stack.init_ckan()
    stack.start_hub(JUPYTERNOTEBOOK_REAPER_INTERVAL="1")
    stack.start_ckan()
    yield stack, seed
    stack.stop()
    for network in docker_client.networks.list(names=[f"jn-test-sessions-launch-{run_id}"]):
        for container in docker_client.containers.list(all=True, filters={"network": network.id}):
            container.remove(force=True)
    remove_sessions_network(docker_client, f"jn-test-sessions-launch-{run_id}")


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
