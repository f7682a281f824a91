"""Report runs through a real hub with the local spawner: papermill in a
session server of the run's own, parameters, artifacts, errors, the time
limit, cancel, and restarts of the bridge and of the hub."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from dev.testing import wait_until

from .fileserver import FileServer, Route
from .report_notebooks import (
    CSV,
    FAILING,
    PARAMETERIZED,
    SLEEPING,
    notebook_bytes,
    outputs_text,
    run_request,
    wait_ended,
)

HUB_ENV = {"JUPYTERNOTEBOOK_REAPER_INTERVAL": "1"}


@pytest.fixture
def files():
    srv = FileServer().start()
    srv.routes["/weather.csv"] = Route(body=CSV)
    srv.routes["/report.ipynb"] = Route(body=PARAMETERIZED)
    srv.routes["/failing.ipynb"] = Route(body=FAILING)
    srv.routes["/sleeping.ipynb"] = Route(body=SLEEPING)
    yield srv
    srv.stop()


def run_dirs(stack) -> list[Path]:
    return sorted((stack.storage / "sessions").glob("run-*"))


def run_processes(stack) -> list[int]:
    """Processes working in a run's home (the server, papermill, the kernel)."""
    prefix = str(stack.storage / "sessions") + "/run-"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "cwd").startswith(prefix):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def report_hub_users(stack) -> set[str]:
    db = sqlite3.connect(stack.hub_state / "jupyterhub.sqlite")
    try:
        return {r[0] for r in db.execute("select name from users where name like 'report-%'")}
    finally:
        db.close()


def run_uid(stack) -> int:
    (home,) = [d / "home" for d in run_dirs(stack)]
    return home.stat().st_uid


def processes_of(uid: int) -> list[int]:
    """Processes running as ``uid`` (a zombie, killed and waiting for its
    parent to collect its exit status, runs nothing and is not counted)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or proc.stat().st_uid != uid:
                continue
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(int(proc.name))
    return found


def nothing_left(stack) -> bool:
    return not run_dirs(stack) and not run_processes(stack) and not report_hub_users(stack)


@pytest.fixture(autouse=True)
def forget_runs(bridge):
    """Runs a failed test left behind are cancelled and forgotten."""
    STARTED.clear()
    yield
    for run_id in STARTED:
        bridge.call("DELETE", f"/api/runs/{run_id}")


STARTED: list[str] = []


def start(bridge, body: dict) -> dict:
    STARTED.append(body["run_id"])
    resp = bridge.call("POST", "/api/runs", json=body)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "running"
    return resp.json()


def delete(bridge, run_id: str) -> None:
    assert bridge.call("DELETE", f"/api/runs/{run_id}").status_code == 204


def test_a_parameterized_run_writes_its_artifact_and_the_notebook_shows_the_values(
        bridge, files, hub_stack):
    body = run_request(files, "/report.ipynb", parameters={"year": 2031, "region": "south"})
    start(bridge, body)
    run = wait_ended(bridge, body["run_id"])
    assert run["status"] == "succeeded", run
    assert run["error"] is None
    assert run["started_at"] and run["finished_at"]
    assert run["artifacts"] == [{"name": "result.csv", "size": run["artifacts"][0]["size"]}]

    nb = json.loads(bridge.call("GET", f"/api/runs/{body['run_id']}/notebook").content)
    assert "report for 2031 in south: 2 rows" in outputs_text(nb)
    sources = ["".join(c["source"]) for c in nb["cells"]]
    # the Colab field was rewritten in place; papermill injected the year
    assert "region = 'south'  # @param ['north', 'south']" in sources
    assert any("year = 2031" in s for s in sources)

    art = bridge.call("GET", f"/api/runs/{body['run_id']}/artifacts/result.csv")
    assert art.status_code == 200
    rows = list(csv.DictReader(io.StringIO(art.text)))
    assert [(r["station"], r["year"], r["region"]) for r in rows] == [
        ("A", "2031", "south"), ("B", "2031", "south")]
    assert len(art.content) == run["artifacts"][0]["size"]

    # the server, its hub user and its home are gone as soon as it ended
    assert nothing_left(hub_stack)
    assert bridge.call("GET", "/api/capacity").json()["sessions"]["active"] == 0
    delete(bridge, body["run_id"])
    assert bridge.call("GET", f"/api/runs/{body['run_id']}").status_code == 404
    assert bridge.call("GET", f"/api/runs/{body['run_id']}/notebook").status_code == 404


def test_a_failing_notebook_is_failed_with_the_error_of_its_cell(bridge, files, hub_stack):
    body = run_request(files, "/failing.ipynb")
    start(bridge, body)
    run = wait_ended(bridge, body["run_id"])
    assert run["status"] == "failed", run
    err = run["error"]
    assert err["ename"] == "ZeroDivisionError"
    assert "division by zero" in err["evalue"]
    assert err["cell_index"] == 2  # no parameters: papermill injected no cell
    assert any("ZeroDivisionError" in line for line in err["traceback"])
    # the executed notebook stops at the failing cell
    nb = json.loads(bridge.call("GET", f"/api/runs/{body['run_id']}/notebook").content)
    assert "before" in outputs_text(nb) and "never" not in outputs_text(nb)
    assert nothing_left(hub_stack)
    delete(bridge, body["run_id"])


def started(stack) -> bool:
    """The sleeping notebook's first cell ran (the kernel is up)."""
    return any((d / "home" / "output" / "started.txt").exists() for d in run_dirs(stack))


def test_a_run_past_its_time_limit_is_timed_out_and_leaves_no_process(bridge, files, hub_stack):
    body = run_request(files, "/sleeping.ipynb", time_limit=15)
    start(bridge, body)
    # the server, papermill and its kernel run as the run's uid meanwhile
    assert wait_until(lambda: started(hub_stack), timeout=60)
    uid = run_uid(hub_stack)
    assert len(processes_of(uid)) >= 3
    assert bridge.call("GET", "/api/capacity").json()["sessions"]["active"] == 0
    run = wait_ended(bridge, body["run_id"], timeout=90)
    assert run["status"] == "timed_out", run
    assert "limit of 15 s" in run["message"]
    assert nothing_left(hub_stack), (run_dirs(hub_stack), run_processes(hub_stack),
                                     report_hub_users(hub_stack))
    assert processes_of(uid) == []
    delete(bridge, body["run_id"])


def test_cancel_kills_the_run_and_removes_its_server_home_and_user(bridge, files, hub_stack):
    body = run_request(files, "/sleeping.ipynb", time_limit=600)
    start(bridge, body)
    assert wait_until(lambda: started(hub_stack), timeout=60)
    assert report_hub_users(hub_stack)
    uid = run_uid(hub_stack)
    assert len(processes_of(uid)) >= 3
    delete(bridge, body["run_id"])
    assert nothing_left(hub_stack)
    assert processes_of(uid) == []
    assert bridge.call("GET", f"/api/runs/{body['run_id']}").status_code == 404


def test_malformed_parameters_are_refused_with_a_clear_message(bridge, files, hub_stack):
    cases = [
        ({"year": [2020]}, "parameter 'year': values are strings, numbers, true, false or null"),
        ({"region": "east"}, "parameter 'region' must be one of ['north', 'south'], not 'east'"),
        ({"not a name": 1}, "is not a Python identifier"),
    ]
    for parameters, message in cases:
        body = run_request(files, "/report.ipynb", parameters=parameters)
        resp = bridge.call("POST", "/api/runs", json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "invalid_parameters"
        assert message in resp.json()["message"]
        assert bridge.call("GET", f"/api/runs/{body['run_id']}").status_code == 404
    assert nothing_left(hub_stack)


def test_a_notebook_that_cannot_be_fetched_or_read_is_refused(bridge, files, hub_stack):
    files.routes["/gone.ipynb"] = Route(body=b"", status=404)
    files.routes["/garbage.ipynb"] = Route(body=b"this is not a notebook")
    for path, code in (("/gone.ipynb", "notebook_unavailable"),
                       ("/garbage.ipynb", "invalid_notebook")):
        body = run_request(files, path)
        resp = bridge.call("POST", "/api/runs", json=body)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"] == code
        assert bridge.call("GET", f"/api/runs/{body['run_id']}").status_code == 404
    assert nothing_left(hub_stack)


def test_a_run_with_the_same_id_is_the_same_run(bridge, files, hub_stack):
    body = run_request(files, "/sleeping.ipynb", time_limit=600)
    start(bridge, body)
    again = bridge.call("POST", "/api/runs", json=body)
    assert again.status_code == 200 and again.json()["status"] == "running"
    assert wait_until(lambda: len(run_processes(hub_stack)) >= 3, timeout=60)
    assert len(report_hub_users(hub_stack)) == 1
    assert len(run_dirs(hub_stack)) == 1
    delete(bridge, body["run_id"])
    assert nothing_left(hub_stack)


def bridge_pid(stack) -> int:
    marker = f"JUPYTERNOTEBOOK_STATE_DIR={stack.hub_state}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"jupyterhub_service.bridge" in cmdline and marker in environ:
            return int(proc.name)
    raise AssertionError("no bridge process")


def test_a_run_goes_on_through_a_restart_of_the_bridge(bridge, files, hub_stack):
    files.routes["/slow.ipynb"] = Route(body=notebook_bytes(
        "import time\ntime.sleep(6)",
        "open('output/after.txt', 'w').write('done after the restart')"))
    body = run_request(files, "/slow.ipynb", time_limit=120)
    start(bridge, body)
    assert wait_until(lambda: len(run_processes(hub_stack)) >= 3, timeout=60)
    old = bridge_pid(hub_stack)
    os.kill(old, signal.SIGKILL)
    # the hub starts its service again
    assert wait_until(lambda: _answers(bridge), timeout=60)
    assert bridge_pid(hub_stack) != old
    run = wait_ended(bridge, body["run_id"], timeout=120)
    assert run["status"] == "succeeded", run
    art = bridge.call("GET", f"/api/runs/{body['run_id']}/artifacts/after.txt")
    assert art.text == "done after the restart"
    assert wait_until(lambda: nothing_left(hub_stack), timeout=30)
    delete(bridge, body["run_id"])


def _answers(bridge) -> bool:
    try:
        return bridge.call("GET", "/api/health", timeout=5).status_code == 200
    except OSError:
        return False


def test_a_run_whose_server_a_hub_restart_stopped_is_failed_and_removed(bridge, files, hub_stack):
    body = run_request(files, "/sleeping.ipynb", time_limit=600)
    start(bridge, body)
    assert wait_until(lambda: len(run_processes(hub_stack)) >= 3, timeout=60)
    # JupyterHub stops every local server on its way out
    hub_stack.stop_hub()
    hub_stack.start_hub(**HUB_ENV)
    run = wait_ended(bridge, body["run_id"], timeout=60)
    assert run["status"] == "failed", run
    assert "server stopped" in run["message"]
    assert wait_until(lambda: nothing_left(hub_stack), timeout=60), (
        run_dirs(hub_stack), run_processes(hub_stack), report_hub_users(hub_stack))
    delete(bridge, body["run_id"])
