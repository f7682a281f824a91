"""The cache command against the test hub's real cache and bridge database."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .fileserver import FileServer, Route


@pytest.fixture
def files():
    srv = FileServer().start()
    srv.routes["/a.csv"] = Route(body=b"a\n1\n")
    srv.routes["/b.csv"] = Route(body=b"b\n2\n")
    yield srv
    srv.stop()


def run_cache(hub_stack, *args) -> str:
    env = {**os.environ, **hub_stack.hub_env()}
    res = subprocess.run([sys.executable, "-m", "jupyterhub_service.cache_command", *args],
                         env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def res(files, name, h):
    return {"id": f"r-{name}", "name": name, "format": "CSV", "hash": h,
            "fetch_url": files.url(f"/{name}.csv"), "source": "ckan"}


def test_clear_keeps_entries_of_live_sessions_and_can_target_a_dataset(bridge, files, hub_stack):
    run_cache(hub_stack, "clear")
    live = bridge.launch("ds-cache-a", user_id="guest-ca", resources=[res(files, "a", "1")]).json()
    ended = bridge.launch("ds-cache-b", user_id="guest-cb", resources=[res(files, "b", "1")]).json()
    bridge.call("DELETE", f"/api/sessions/{ended['id']}")

    shown = run_cache(hub_stack)
    assert "2 entries" in shown
    line_a = next(line for line in shown.splitlines() if "r-a|" in line)
    assert "in use" in line_a and "dataset=ds-cache-a" in line_a
    assert "in use" not in next(line for line in shown.splitlines() if "r-b|" in line)

    run_cache(hub_stack, "clear", "--dataset", "ds-other")
    assert "2 entries" in run_cache(hub_stack)
    out = run_cache(hub_stack, "clear")
    assert "kept 1 entry" in out
    after = run_cache(hub_stack)
    assert "1 entries" in after and "r-a|" in after and "r-b|" not in after
    assert live["status"] == "ready"
