"""The bridge's records against what really runs, through a real hub with
the local spawner: a hub restart, a server no record owns, a teardown the
hub does not answer, and idle culling past the hub's page size.

Some tests restart (or freeze) the session-scoped hub; each leaves it
running as the fixture started it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from dev.testing import open_lab, wait_until

# what conftest's hub_stack starts the hub with
HUB_ENV = {"JUPYTERNOTEBOOK_REAPER_INTERVAL": "1"}


def restart_hub(stack, *hub_args: str) -> None:
    """Stop the hub (JupyterHub stops every local server on its way out, the
    bridge with it) and start it again; returns once both answer."""
    stack.stop_hub()
    stack.start_hub(*hub_args, **HUB_ENV)


def hub_users(stack) -> set[str]:
    db = sqlite3.connect(stack.hub_state / "jupyterhub.sqlite")
    try:
        return {r[0] for r in db.execute("select name from users")}
    finally:
        db.close()


def server_processes(session_dir: Path) -> list[int]:
    """Processes running in a session's directory (a local server's cwd)."""
    prefix = str(session_dir) + "/"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if (cwd + "/").startswith(prefix):
            found.append(int(proc.name))
    return found


def status(bridge, session: dict) -> str:
    return bridge.call("GET", f"/api/sessions/{session['id']}").json()["status"]


@pytest.fixture
def frozen_hub(hub_stack):
    """``freeze()`` stops the hub process (SIGSTOP): it accepts connections
    and answers nothing, as a hung hub. ``thaw()`` resumes it; done at the
    end whatever happens."""
    pid = hub_stack.running("hub")
    assert pid

    class Hub:
        def freeze(self):
            os.kill(pid, signal.SIGSTOP)

        def thaw(self):
            os.kill(pid, signal.SIGCONT)

    hub = Hub()
    yield hub
    hub.thaw()


def test_a_hub_restart_ends_the_sessions_it_stopped_and_the_guest_gets_a_working_one(
        bridge, hub_stack):
    first = bridge.launch("ds-restart-1", user_id="guest-restart-1").json()
    second = bridge.launch("ds-restart-2", user_id="guest-restart-2").json()
    assert bridge.call("GET", "/api/capacity").json()["guests"]["active"] == 2
    dirs = [hub_stack.storage / "sessions" / s["id"] for s in (first, second)]
    assert all(d.exists() for d in dirs)

    restart_hub(hub_stack)

    # the bridge serves only once the sessions the restart stopped are ended
    capacity = bridge.call("GET", "/api/capacity").json()
    assert capacity["guests"]["active"] == 0
    assert capacity["sessions"]["active"] == 0
    assert [status(bridge, s) for s in (first, second)] == ["ended", "ended"]
    assert not any(d.exists() for d in dirs)
    assert not {first["hub_user"], second["hub_user"]} & hub_users(hub_stack)

    again = bridge.launch("ds-restart-1", user_id="guest-restart-1")
    assert again.status_code == 201, again.text
    assert again.json()["id"] != first["id"]
    lab = open_lab(again.json())
    assert lab.status() == 200
    assert "start_here.ipynb" in lab.listing()


def test_a_server_no_record_owns_is_stopped_and_its_user_and_directory_removed(
        bridge, hub_stack):
    sess = bridge.launch("ds-orphan", user_id="guest-orphan").json()
    home = hub_stack.storage / "sessions" / sess["id"]
    assert server_processes(home)
    # the record is lost (a database restored from an older backup, say)
    db = sqlite3.connect(hub_stack.hub_state / "bridge.sqlite")
    try:
        with db:
            db.execute("delete from sessions where id = ?", (sess["id"],))
    finally:
        db.close()

    assert wait_until(lambda: not home.exists(), timeout=60)
    assert wait_until(lambda: sess["hub_user"] not in hub_users(hub_stack), timeout=30)
    assert server_processes(home) == []


def test_a_stop_the_hub_does_not_answer_keeps_the_session_stopping_until_it_is_done(
        bridge, hub_stack, frozen_hub):
    sess = bridge.launch("ds-frozen", user_id="guest-frozen").json()
    home = hub_stack.storage / "sessions" / sess["id"]

    frozen_hub.freeze()
    resp = bridge.call("DELETE", f"/api/sessions/{sess['id']}")
    assert resp.status_code == 503
    assert resp.json()["error"] == "hub_unavailable"
    assert status(bridge, sess) == "stopping"
    # still tracked: listed, counted under the host's cap, server running
    assert [s["id"] for s in bridge.sessions(user_id="guest-frozen")] == [sess["id"]]
    assert bridge.call("GET", "/api/capacity").json()["sessions"]["stopping"] == 1
    assert server_processes(home)

    frozen_hub.thaw()
    assert wait_until(lambda: status(bridge, sess) == "ended", timeout=90)
    assert server_processes(home) == []
    assert not home.exists()
    assert sess["hub_user"] not in hub_users(hub_stack)
    assert bridge.call("GET", "/api/capacity").json()["sessions"]["stopping"] == 0


def test_idle_culling_reaches_every_session_when_the_hub_pages_by_two(bridge, hub_stack):
    restart_hub(hub_stack, "--JupyterHub.api_page_max_limit=2")
    try:
        # two sessions started without an idle limit fill the first page
        busy = [bridge.launch(f"ds-page-busy-{i}", user_id=f"guest-page-busy-{i}").json()
                for i in range(2)]
        bridge.put_settings(idle_timeout=1)
        idle = [bridge.launch(f"ds-page-idle-{i}", user_id=f"guest-page-idle-{i}").json()
                for i in range(3)]
        assert all(s["status"] == "ready" for s in busy + idle)

        assert wait_until(lambda: all(status(bridge, s) == "ended" for s in idle), timeout=60)
        assert [status(bridge, s) for s in busy] == ["ready", "ready"]
    finally:
        bridge.end_all()
        restart_hub(hub_stack)
