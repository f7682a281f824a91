"""Report runs with the docker spawner: papermill by ``docker exec`` in a
session container of the run's own, confined like a visitor's; the
artifact and the parameter come back, a failing notebook reports its cell,
and a run past its limit or cancelled leaves no container behind."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from session_harness import assert_confined, docker_stack
from dev.testing import Bridge, wait_until

from jupyterhub_service.container_labels import LABEL_HUB_USER
from jupyterhub_service.tests.fileserver import FileServer, Route
from jupyterhub_service.tests.report_notebooks import (
    CSV,
    FAILING,
    PARAMETERIZED,
    SLEEPING,
    outputs_text,
    run_request,
    wait_ended,
)

pytestmark = pytest.mark.docker

HUB_ENV = {"JUPYTERNOTEBOOK_REAPER_INTERVAL": "1"}


@pytest.fixture(scope="module")
def docker_hub(images, hub_stack, docker_client, run_id):
    """Hub + bridge with the docker spawner (no CKAN: the bridge is called
    directly); hub_stack holds the machine's test-stack lock."""
    with docker_stack("reports", 8105, hub_stack, docker_client, run_id,
                      env={"CKAN_JUPYTERHUB_CPU_PERCENT": "50"},
                      hub_env=HUB_ENV) as stack:
        yield stack


@pytest.fixture
def files():
    srv = FileServer().start()
    srv.routes["/weather.csv"] = Route(body=CSV)
    srv.routes["/report.ipynb"] = Route(body=PARAMETERIZED)
    srv.routes["/failing.ipynb"] = Route(body=FAILING)
    srv.routes["/sleeping.ipynb"] = Route(body=SLEEPING)
    yield srv
    srv.stop()


STARTED: list[str] = []


@pytest.fixture
def bridge(docker_hub):
    """The bridge; runs a failed test left behind are cancelled and forgotten."""
    client = Bridge(docker_hub.bridge_url, docker_hub.token)
    STARTED.clear()
    yield client
    for run_id in STARTED:
        client.call("DELETE", f"/api/runs/{run_id}")


def run_containers(docker_client) -> list:
    return [c for c in docker_client.containers.list(all=True, ignore_removed=True,
                                                     filters={"label": LABEL_HUB_USER})
            if c.labels.get(LABEL_HUB_USER, "").startswith("report-")]


def run_dirs(stack) -> list[Path]:
    return sorted((stack.storage / "sessions").glob("run-*"))


def nothing_left(stack, docker_client) -> bool:
    return not run_containers(docker_client) and not run_dirs(stack)


def start(bridge, body: dict) -> None:
    STARTED.append(body["run_id"])
    resp = bridge.call("POST", "/api/runs", json=body)
    assert resp.status_code == 202, resp.text


def test_a_parameterized_run_in_a_confined_container_returns_its_artifact(
        bridge, files, docker_hub, docker_client):
    body = run_request(files, "/report.ipynb", parameters={"year": 2042, "region": "south"})
    start(bridge, body)
    # while it runs: a session container like a visitor's, with its limits
    assert wait_until(lambda: run_containers(docker_client), timeout=120)
    (container,) = run_containers(docker_client)
    container.reload()
    assert_confined(container, memory=512 * 1024**2, nano_cpus=500_000_000)
    run = wait_ended(bridge, body["run_id"])
    assert run["status"] == "succeeded", run
    nb = json.loads(bridge.call("GET", f"/api/runs/{body['run_id']}/notebook").content)
    assert "report for 2042 in south: 2 rows" in outputs_text(nb)
    art = bridge.call("GET", f"/api/runs/{body['run_id']}/artifacts/result.csv")
    rows = list(csv.DictReader(io.StringIO(art.text)))
    assert [(r["year"], r["region"]) for r in rows] == [("2042", "south"), ("2042", "south")]
    assert nothing_left(docker_hub, docker_client)
    assert bridge.call("DELETE", f"/api/runs/{body['run_id']}").status_code == 204


def test_a_failing_notebook_in_docker_reports_its_cell(bridge, files, docker_hub, docker_client):
    body = run_request(files, "/failing.ipynb")
    start(bridge, body)
    run = wait_ended(bridge, body["run_id"])
    assert run["status"] == "failed", run
    assert run["error"]["ename"] == "ZeroDivisionError"
    assert run["error"]["cell_index"] == 2
    assert nothing_left(docker_hub, docker_client)
    assert bridge.call("DELETE", f"/api/runs/{body['run_id']}").status_code == 204


def test_a_docker_run_past_its_limit_is_timed_out_and_its_container_removed(
        bridge, files, docker_hub, docker_client):
    body = run_request(files, "/sleeping.ipynb", time_limit=5)
    start(bridge, body)
    assert wait_until(lambda: run_containers(docker_client), timeout=120)
    run = wait_ended(bridge, body["run_id"], timeout=120)
    assert run["status"] == "timed_out", run
    assert nothing_left(docker_hub, docker_client), (run_containers(docker_client),
                                                     run_dirs(docker_hub))
    assert bridge.call("DELETE", f"/api/runs/{body['run_id']}").status_code == 204


def test_cancelling_a_docker_run_removes_its_container(bridge, files, docker_hub, docker_client):
    body = run_request(files, "/sleeping.ipynb", time_limit=600)
    start(bridge, body)
    assert wait_until(lambda: run_containers(docker_client), timeout=120)
    assert bridge.call("DELETE", f"/api/runs/{body['run_id']}").status_code == 204
    assert nothing_left(docker_hub, docker_client)
    assert bridge.call("GET", f"/api/runs/{body['run_id']}").status_code == 404
