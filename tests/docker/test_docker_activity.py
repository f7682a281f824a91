"""A kernel that is executing counts as activity in a docker session too: the
session image carries the server extension the hub enables in every session
(jupyterhub_service/busy_kernels.py), so a long silent cell is not culled as
idle."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from session_harness import docker_stack, session_containers
from dev.testing import Bridge, open_lab, wait_until

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_hub(images, hub_stack, docker_client, run_id):
    """Hub + bridge with the docker spawner and the repository's hub
    configuration (no CKAN: the bridge is called directly)."""
    with docker_stack("activity", 8085, hub_stack, docker_client, run_id) as stack:
        yield stack


def test_a_kernel_running_a_silent_cell_keeps_a_docker_session_active(
        docker_hub, docker_client):
    bridge = Bridge(docker_hub.bridge_url, docker_hub.token)
    sess = bridge.launch("ds-busy-docker", user_id="guest-busy-docker").json()
    assert sess["status"] == "ready", sess
    lab = open_lab(sess)
    (container,) = session_containers(docker_client, sess["id"])
    logs = container.logs().decode(errors="replace")
    assert "Busy kernels count as activity" in logs, logs[-3000:]
    assert "No module named 'jupyterhub_service'" not in logs, logs[-3000:]

    def last_activity() -> dt.datetime:
        r = lab.http.get(lab.base + "api/status", timeout=30)  # not counted as activity
        r.raise_for_status()
        return dt.datetime.fromisoformat(r.json()["last_activity"].replace("Z", "+00:00"))

    def a_kernel_is_busy() -> bool:
        r = lab.http.get(lab.base + "api/kernels", params={"no_track_activity": "1"}, timeout=30)
        return any(k["execution_state"] == "busy" for k in r.json())

    result = {}
    cell = threading.Thread(target=lambda: result.update(
        out=lab.execute("import time; print('start', flush=True); time.sleep(25); print('done')",
                        timeout=90)))
    cell.start()
    try:
        assert wait_until(a_kernel_is_busy, timeout=60)
        time.sleep(1)  # let the cell's first output arrive: activity it does count
        started = last_activity()
        # the cell prints nothing for 25 s; activity must keep moving anyway
        assert wait_until(lambda: last_activity() >= started + dt.timedelta(seconds=8),
                          timeout=20)
    finally:
        cell.join(120)
    assert "done" in result["out"][0]
    assert bridge.call("DELETE", f"/api/sessions/{sess['id']}").status_code == 204
