"""Workspaces that last with the docker spawner: the workspace is bound only
into its user's session containers, survives from one session to the next on
another dataset, is absent for another user and a guest, holds at most the
quota, and goes after the retention period."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from session_harness import docker_stack, session_containers
from dev.testing import Bridge, open_lab, wait_until

from jupyterhub_service.store import Store, WorkspaceRecord
from jupyterhub_service.workspaces import workspace_key

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_hub(images, hub_stack, docker_client, run_id):
    """Hub + bridge with the docker spawner (no CKAN: the bridge is called
    directly); hub_stack holds the machine's test-stack lock."""
    with docker_stack("ws", 8075, hub_stack, docker_client, run_id,
                      env={"CKAN_JUPYTERHUB_PERSISTENT_WORKSPACES": "true",
                           "CKAN_JUPYTERHUB_WORKSPACE_QUOTA": "64M"},
                      hub_env={"JUPYTERNOTEBOOK_REAPER_INTERVAL": "1"}) as stack:
        yield stack


@pytest.fixture
def bridge(docker_hub):
    client = Bridge(docker_hub.bridge_url, docker_hub.token)
    yield client
    client.end_all()
    for ws in client.call("GET", "/api/workspaces").json()["workspaces"]:
        client.call("DELETE", f"/api/workspaces/{ws['user_id']}")


def run(lab, code: str) -> str:
    out, err = lab.execute(textwrap.dedent(code))
    assert err is None, err
    return out.strip()


def end(bridge, sess) -> None:
    assert bridge.call("DELETE", f"/api/sessions/{sess['id']}").status_code == 204


def workspace_binds(container) -> list[dict]:
    return [m for m in container.attrs["Mounts"] if m["Destination"] == "/home/jovyan/work"]


def test_a_workspace_follows_its_user_to_another_dataset_and_no_one_else(
        bridge, docker_hub, docker_client):
    first = bridge.launch("ds-dws-one", kind="user", user_id="dws-alice").json()
    lab = open_lab(first)
    assert run(lab, """
        import os
        open(os.path.expanduser("~/work/notes.txt"), "w").write("kept in docker")
        print(os.stat(os.path.expanduser("~/work")).st_uid)
    """) == "1000"
    (container,) = session_containers(docker_client, first["id"])
    (bind,) = workspace_binds(container)
    mount = docker_hub.storage / "workspaces" / "mnt" / workspace_key("dws-alice")
    assert bind["Source"] == str(mount) and bind["RW"] is True

    # another user, at the same time: a workspace of their own, nothing of alice's
    bob = bridge.launch("ds-dws-one", kind="user", user_id="dws-bob").json()
    assert open_lab(bob).listing("work") == []
    (bob_container,) = session_containers(docker_client, bob["id"])
    assert [m["Source"] for m in workspace_binds(bob_container)] \
        == [str(docker_hub.storage / "workspaces" / "mnt" / workspace_key("dws-bob"))]
    # a guest: no workspace at all
    guest = bridge.launch("ds-dws-one", user_id="guest-dws").json()
    assert "work" not in open_lab(guest).listing()
    (guest_container,) = session_containers(docker_client, guest["id"])
    assert workspace_binds(guest_container) == []
    assert not any(str(docker_hub.storage / "workspaces") in m["Source"]
                   for m in guest_container.attrs["Mounts"])

    end(bridge, first)
    assert str(mount) not in open("/proc/self/mounts").read()
    second = bridge.launch("ds-dws-two", kind="user", user_id="dws-alice").json()
    assert open_lab(second).read("work/notes.txt") == b"kept in docker"


def test_writing_past_the_workspace_quota_fails_in_the_container(bridge):
    lab = open_lab(bridge.launch("ds-dws-quota", kind="user", user_id="dws-big").json())
    out = run(lab, """
        import errno, os
        written = 0
        try:
            with open(os.path.expanduser("~/work/big.bin"), "wb") as f:
                for _ in range(200):
                    f.write(b"x" * (1 << 20))
                    f.flush()
                    written += 1
                os.fsync(f.fileno())
            print("no-error", written)
        except OSError as e:
            print("ENOSPC" if e.errno == errno.ENOSPC else e.errno, written)
        open(os.path.expanduser("~/outside.txt"), "w").write("fine")
        print(open(os.path.expanduser("~/outside.txt")).read())
    """)
    verdict, written, outside = out.split()
    assert verdict == "ENOSPC" and int(written) < 64
    assert outside == "fine"


def test_a_docker_workspace_unused_past_the_retention_is_removed(bridge, docker_hub):
    bridge.put_settings(workspace_retention_days=1)
    try:
        sess = bridge.launch("ds-dws-old", kind="user", user_id="dws-old").json()
        run(open_lab(sess), "open('work/old.txt', 'w').write('old')")
        end(bridge, sess)
        image = docker_hub.storage / "workspaces" / f"{workspace_key('dws-old')}.ext4"
        assert image.exists()
        store = Store(f"sqlite:///{docker_hub.hub_state / 'bridge.sqlite'}")
        with store.db() as s:
            rec = s.get(WorkspaceRecord, "dws-old")
            rec.last_used = rec.last_used - dt.timedelta(days=1, minutes=1)
        assert wait_until(lambda: bridge.call(
            "GET", "/api/workspaces", params={"user_id": "dws-old"}).json()["workspaces"] == [],
            timeout=30)
        assert not image.exists()
    finally:
        bridge.put_settings(workspace_retention_days=30)
