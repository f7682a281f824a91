"""Workspaces that last, with the local spawner: real sessions in the real
hub, files written by the session's own code, the bridge's own database
for the retention clock."""

from __future__ import annotations

import datetime as dt
import io
import textwrap
import zipfile

import pytest

from dev.testing import open_lab, wait_until

from jupyterhub_service.store import Store, WorkspaceRecord
from jupyterhub_service.workspaces import IN_USE_NOTE, workspace_key

QUOTA = "64M"


@pytest.fixture
def workspaces(bridge):
    """Workspaces on, with a small quota; every workspace removed after."""
    bridge.put_settings(persistent_workspaces=True, workspace_quota=QUOTA)
    yield bridge
    bridge.end_all()
    for ws in bridge.call("GET", "/api/workspaces").json()["workspaces"]:
        assert bridge.call("DELETE", f"/api/workspaces/{ws['user_id']}").status_code == 204


def end(bridge, sess):
    assert bridge.call("DELETE", f"/api/sessions/{sess['id']}").status_code == 204


def run(lab, code: str) -> str:
    out, err = lab.execute(textwrap.dedent(code))
    assert err is None, err
    return out.strip()


def write_in_work(lab, name: str, text: str) -> None:
    assert run(lab, f"""
        import os
        path = os.path.expanduser("~/work/{name}")
        with open(path, "w") as f:
            f.write({text!r})
        print("written", os.stat(path).st_uid == os.getuid())
    """) == "written True"


def workspace_of(bridge, user_id: str) -> dict | None:
    found = bridge.call("GET", "/api/workspaces", params={"user_id": user_id}).json()["workspaces"]
    return found[0] if found else None


def workspace_dir(hub_stack):
    return hub_stack.storage / "workspaces"


def test_a_file_in_work_is_there_in_the_users_next_session_on_another_dataset(workspaces):
    first = open_lab(workspaces.launch("ds-ws-one", kind="user", user_id="ws-alice").json())
    write_in_work(first, "notes.txt", "kept across datasets")
    ws = workspace_of(workspaces, "ws-alice")
    assert ws["in_use"] is True and ws["size"] > 0
    end(workspaces, workspaces.sessions(user_id="ws-alice")[0])

    after = workspace_of(workspaces, "ws-alice")
    assert after["in_use"] is False and after["size"] > 0
    assert after["last_used"] >= ws["last_used"]
    second_sess = workspaces.launch("ds-ws-two", kind="user", user_id="ws-alice").json()
    second = open_lab(second_sess)
    assert second.read("work/notes.txt") == b"kept across datasets"
    # the new session (a uid of its own) owns what the last one wrote
    write_in_work(second, "notes.txt", "changed in the second session")
    assert second.read("work/notes.txt") == b"changed in the second session"


def test_another_user_and_a_guest_do_not_see_a_users_workspace(workspaces, hub_stack):
    alice = open_lab(workspaces.launch("ds-ws-a", kind="user", user_id="ws-alice").json())
    write_in_work(alice, "secret.txt", "alice's")
    image_mount = workspace_dir(hub_stack) / "mnt" / workspace_key("ws-alice")
    assert (image_mount / "secret.txt").exists()
    alice_home = hub_stack.storage / "sessions" / workspaces.sessions(user_id="ws-alice")[0]["id"] / "home"

    bob = open_lab(workspaces.launch("ds-ws-a", kind="user", user_id="ws-bob").json())
    assert bob.listing("work") == []
    out = run(bob, f"""
        for path in ({str(image_mount / 'secret.txt')!r}, {str(alice_home / 'work' / 'secret.txt')!r}):
            try:
                open(path).read()
                print("READ")
            except PermissionError:
                print("refused")
    """)
    assert out.split() == ["refused", "refused"]

    guest = open_lab(workspaces.launch("ds-ws-a", user_id="guest-ws").json())
    assert "work" not in guest.listing()
    assert workspace_of(workspaces, "guest-ws") is None
    assert {w["user_id"] for w in workspaces.call("GET", "/api/workspaces").json()["workspaces"]} \
        == {"ws-alice", "ws-bob"}


def test_writing_past_the_quota_fails_inside_the_session(workspaces):
    lab = open_lab(workspaces.launch("ds-ws-quota", kind="user", user_id="ws-big").json())
    out = run(lab, """
        import errno, os
        chunk = b"x" * (1 << 20)
        written = 0
        try:
            with open(os.path.expanduser("~/work/big.bin"), "wb") as f:
                for _ in range(200):
                    f.write(chunk)
                    f.flush()
                    written += 1
                os.fsync(f.fileno())
            print("no error", written)
        except OSError as e:
            print("ENOSPC" if e.errno == errno.ENOSPC else e, written)
        # nothing else is harmed: the rest of the home still takes a file
        with open(os.path.expanduser("~/outside.txt"), "w") as f:
            f.write("fine")
        print(open(os.path.expanduser("~/outside.txt")).read())
    """)
    verdict, written, outside = out.split()
    assert verdict == "ENOSPC"
    assert int(written) < 64
    assert outside == "fine"
    assert workspace_of(workspaces, "ws-big")["quota"] == 64 * 1024**2


def test_a_workspace_unused_longer_than_the_retention_is_removed(workspaces, hub_stack):
    workspaces.put_settings(workspace_retention_days=2)
    sess = workspaces.launch("ds-ws-old", kind="user", user_id="ws-old").json()
    write_in_work(open_lab(sess), "old.txt", "soon gone")
    end(workspaces, sess)
    image = workspace_dir(hub_stack) / f"{workspace_key('ws-old')}.ext4"
    assert image.exists()

    # the retention clock is the bridge's record of the last use: move it
    # back past the period instead of waiting two days
    store = Store(f"sqlite:///{hub_stack.hub_state / 'bridge.sqlite'}")
    with store.db() as s:
        rec = s.get(WorkspaceRecord, "ws-old")
        rec.last_used = rec.last_used - dt.timedelta(days=2, minutes=1)
    assert wait_until(lambda: workspace_of(workspaces, "ws-old") is None, timeout=30)
    assert not image.exists()
    again = open_lab(workspaces.launch("ds-ws-old", kind="user", user_id="ws-old").json())
    assert again.listing("work") == []


def test_a_workspace_used_within_the_retention_is_kept(workspaces, hub_stack):
    workspaces.put_settings(workspace_retention_days=2)
    sess = workspaces.launch("ds-ws-recent", kind="user", user_id="ws-recent").json()
    write_in_work(open_lab(sess), "recent.txt", "stays")
    end(workspaces, sess)
    store = Store(f"sqlite:///{hub_stack.hub_state / 'bridge.sqlite'}")
    with store.db() as s:
        rec = s.get(WorkspaceRecord, "ws-recent")
        rec.last_used = rec.last_used - dt.timedelta(days=1, hours=23)
    # the reaper runs every second in the test stack: give it a few passes
    assert not wait_until(lambda: workspace_of(workspaces, "ws-recent") is None, timeout=5)
    assert (workspace_dir(hub_stack) / f"{workspace_key('ws-recent')}.ext4").exists()


def test_deleting_a_workspace_is_refused_while_a_session_of_its_user_is_live(workspaces, hub_stack):
    sess = workspaces.launch("ds-ws-del", kind="user", user_id="ws-del").json()
    write_in_work(open_lab(sess), "a.txt", "a")
    refused = workspaces.call("DELETE", "/api/workspaces/ws-del")
    assert refused.status_code == 409
    assert refused.json()["error"] == "session_live"
    end(workspaces, sess)
    assert workspaces.call("DELETE", "/api/workspaces/ws-del").status_code == 204
    assert workspace_of(workspaces, "ws-del") is None
    assert not (workspace_dir(hub_stack) / f"{workspace_key('ws-del')}.ext4").exists()
    assert workspaces.call("DELETE", "/api/workspaces/ws-del").status_code == 404


def test_the_download_is_a_zip_of_the_workspace_without_symlinks(workspaces):
    sess = workspaces.launch("ds-ws-zip", kind="user", user_id="ws-zip").json()
    lab = open_lab(sess)
    write_in_work(lab, "result.csv", "a,b\n1,2\n")
    run(lab, """
        import os
        os.makedirs(os.path.expanduser("~/work/sub"))
        open(os.path.expanduser("~/work/sub/deep.txt"), "w").write("deep")
        os.symlink("/etc/shadow", os.path.expanduser("~/work/shadow"))
    """)
    for when in ("live", "after the session"):
        resp = workspaces.call("GET", "/api/workspaces/ws-zip/download")
        assert resp.status_code == 200, when
        assert resp.headers["Content-Type"] == "application/zip"
        zf = zipfile.ZipFile(io.BytesIO(resp.content))
        assert zf.read("work/result.csv") == b"a,b\n1,2\n"
        assert zf.read("work/sub/deep.txt") == b"deep"
        assert "work/shadow" not in zf.namelist()
        end(workspaces, sess) if when == "live" else None
    assert workspaces.call("GET", "/api/workspaces/nobody/download").status_code == 404


def test_a_second_session_of_the_same_user_gets_a_note_instead_of_the_workspace(workspaces):
    first = open_lab(workspaces.launch("ds-ws-first", kind="user", user_id="ws-twice").json())
    write_in_work(first, "mine.txt", "first")
    second = open_lab(workspaces.launch("ds-ws-second", kind="user", user_id="ws-twice").json())
    listing = second.listing()
    assert "work" not in listing
    note = second.read(IN_USE_NOTE).decode()
    assert "Dataset ds-ws-first" in note
    # the first session keeps it, unharmed
    assert first.read("work/mine.txt") == b"first"


def test_no_workspace_when_persistent_workspaces_is_off(bridge):
    lab = open_lab(bridge.launch("ds-ws-off", kind="user", user_id="ws-off").json())
    assert "work" not in lab.listing()
    assert bridge.call("GET", "/api/workspaces", params={"user_id": "ws-off"}).json() == {"workspaces": []}


def test_a_workspace_is_unmounted_when_its_session_ends(workspaces, hub_stack):
    sess = workspaces.launch("ds-ws-mount", kind="user", user_id="ws-mount").json()
    write_in_work(open_lab(sess), "x.txt", "x")
    mount = str(workspace_dir(hub_stack) / "mnt" / workspace_key("ws-mount"))
    home = str(hub_stack.storage / "sessions" / sess["id"] / "home" / "work")
    assert {mount, home} <= mounts()
    end(workspaces, sess)
    assert not ({mount, home} & mounts())


def mounts() -> set[str]:
    with open("/proc/self/mounts") as f:
        return {line.split()[1] for line in f}


def test_workspaces_need_the_bearer_token(hub_stack):
    import requests

    for method, path in (("GET", "/api/workspaces"), ("DELETE", "/api/workspaces/x"),
                         ("GET", "/api/workspaces/x/download")):
        assert requests.request(method, hub_stack.bridge_url + path, timeout=30).status_code == 401

