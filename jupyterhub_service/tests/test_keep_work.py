"""Keeping work on the bridge (issue 13): Extend, and reading one file of a
session's home, against the real hub, bridge and JupyterLab."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid

import pytest

from dev.testing import open_lab, wait_until


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _launch_user(bridge, **kw) -> dict:
    resp = bridge.launch(f"ds-{uuid.uuid4().hex[:8]}", kind="user",
                         user_id=f"user-{uuid.uuid4().hex[:8]}", **kw)
    assert resp.status_code == 201, resp.text
    return resp.json()


# -- Extend ------------------------------------------------------------------


def test_extend_moves_the_end_and_the_server_is_still_there_after_the_old_end(bridge):
    bridge.put_settings(timeout=12, max_extended_age=600)
    sess = _launch_user(bridge)
    lab = open_lab(sess)
    old_end = _time(sess["expires_at"])
    assert sess["can_extend"] is True and sess["extend_refusal"] is None
    assert 0 < sess["seconds_left"] <= 12

    resp = bridge.call("POST", f"/api/sessions/{sess['id']}/extend")
    assert resp.status_code == 200, resp.text
    extended = resp.json()
    assert _time(extended["expires_at"]) == old_end + dt.timedelta(seconds=12)
    assert extended["seconds_left"] > 12

    # past the old end, and past a few reaper passes (1 s each)
    assert wait_until(lambda: _now() > old_end + dt.timedelta(seconds=3), timeout=30)
    assert bridge.call("GET", f"/api/sessions/{sess['id']}").json()["status"] == "ready"
    # the browser's hub login and the server's own OAuth cookie still work
    assert lab.status() == 200
    assert lab.write("still-here.txt", "yes").status_code in (200, 201)

    # and the new end ends it
    assert wait_until(
        lambda: bridge.call("GET", f"/api/sessions/{sess['id']}").json()["status"] == "ended",
        timeout=40)
    assert lab.status() != 200


def test_extend_stops_at_max_extended_age(bridge):
    bridge.put_settings(timeout=300, max_extended_age=400)
    sess = _launch_user(bridge)
    started = _time(sess["started_at"])
    assert _time(sess["max_expires_at"]) == started + dt.timedelta(seconds=400)

    first = bridge.call("POST", f"/api/sessions/{sess['id']}/extend")
    assert first.status_code == 200, first.text
    assert _time(first.json()["expires_at"]) == started + dt.timedelta(seconds=400)
    assert first.json()["can_extend"] is False
    assert first.json()["extend_refusal"] == "extend_limit"

    again = bridge.call("POST", f"/api/sessions/{sess['id']}/extend")
    assert again.status_code == 409
    assert again.json()["error"] == "extend_limit"
    assert "longest time a session may last" in again.json()["message"]


def test_max_extended_age_zero_turns_extend_off(bridge):
    bridge.put_settings(max_extended_age=0)
    sess = _launch_user(bridge)
    assert sess["max_expires_at"] == sess["expires_at"]
    resp = bridge.call("POST", f"/api/sessions/{sess['id']}/extend")
    assert resp.status_code == 409
    assert resp.json()["error"] == "extend_limit"


def test_guests_cannot_extend_unless_guest_extensions_is_on(bridge):
    resp = bridge.launch(f"ds-{uuid.uuid4().hex[:8]}")
    assert resp.status_code == 201, resp.text
    sess = resp.json()
    assert sess["can_extend"] is False and sess["extend_refusal"] == "guests_cannot_extend"
    refused = bridge.call("POST", f"/api/sessions/{sess['id']}/extend")
    assert refused.status_code == 403
    assert refused.json()["error"] == "guests_cannot_extend"
    assert "Log in" in refused.json()["message"]

    bridge.put_settings(guest_extensions=True)
    allowed = bridge.call("POST", f"/api/sessions/{sess['id']}/extend")
    assert allowed.status_code == 200, allowed.text
    assert _time(allowed.json()["expires_at"]) > _time(sess["expires_at"])


def test_extend_is_refused_while_visitors_are_refused_for_capacity(bridge):
    bridge.put_settings(max_sessions=1)
    sess = _launch_user(bridge)
    assert bridge.call("GET", f"/api/sessions/{sess['id']}").json()["can_extend"] is True

    turned_away = bridge.launch(f"ds-{uuid.uuid4().hex[:8]}", kind="user", user_id="someone-else")
    assert turned_away.status_code == 429
    assert turned_away.json()["error"] == "capacity"

    resp = bridge.call("POST", f"/api/sessions/{sess['id']}/extend")
    assert resp.status_code == 429
    assert resp.json()["error"] == "capacity"
    assert int(resp.headers["Retry-After"]) > 0
    shown = bridge.call("GET", f"/api/sessions/{sess['id']}").json()
    assert shown["can_extend"] is False and shown["extend_refusal"] == "capacity"

    # new caps: earlier refusals no longer count
    bridge.put_settings(max_sessions=5)
    assert bridge.call("POST", f"/api/sessions/{sess['id']}/extend").status_code == 200


def test_extend_of_unknown_or_ended_sessions(bridge):
    assert bridge.call("POST", "/api/sessions/nope/extend").json()["error"] == "not_found"
    sess = _launch_user(bridge)
    assert bridge.call("DELETE", f"/api/sessions/{sess['id']}").status_code == 204
    resp = bridge.call("POST", f"/api/sessions/{sess['id']}/extend")
    assert resp.status_code == 409 and resp.json()["error"] == "not_running"


# -- one file of the home ----------------------------------------------------


@pytest.fixture
def session_with_files(bridge):
    sess = _launch_user(bridge)
    lab = open_lab(sess)
    out, err = lab.execute(
        "import os\n"
        "open('result.csv', 'wb').write(bytes(range(256)) * 40)\n"
        "os.makedirs('out', exist_ok=True)\n"
        "open('out/big.bin', 'wb').write(b'x' * 5000)\n"
        "os.symlink('/etc/passwd', 'passwd-link')\n"
        "os.symlink('/etc', 'etc-link')\n"
        "os.mkfifo('a-fifo')\n"
        "print('ok')\n")
    assert err is None and "ok" in out, (out, err)
    return sess


def _file(bridge, sess, path, **params):
    return bridge.call("GET", f"/api/sessions/{sess['id']}/files", params={"path": path, **params})


def test_a_file_of_the_home_comes_back_byte_for_byte(bridge, session_with_files):
    resp = _file(bridge, session_with_files, "result.csv", max_bytes=20000)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.content == bytes(range(256)) * 40
    nested = _file(bridge, session_with_files, "./out/big.bin")
    assert nested.content == b"x" * 5000


def test_a_file_bigger_than_max_bytes_is_refused(bridge, session_with_files):
    resp = _file(bridge, session_with_files, "out/big.bin", max_bytes=4999)
    assert resp.status_code == 413
    assert resp.json()["error"] == "too_large"
    assert resp.json()["size"] == 5000


@pytest.mark.parametrize("path", [
    "passwd-link",  # a symlink to a host file
    "etc-link/passwd",  # a symlink as a folder on the way
    "a-fifo",  # not a regular file (and never blocks the bridge)
    "out",  # a folder
    "/etc/passwd",
    "../home/../../../etc/passwd",
    "data/README.md",  # the dataset's own files
    "",
])
def test_paths_that_leave_the_home_or_are_not_regular_files_are_refused(
        bridge, session_with_files, path):
    resp = _file(bridge, session_with_files, path)
    assert resp.status_code == 400, (path, resp.status_code, resp.text)
    assert resp.json()["error"] == "bad_path"
    assert "root:" not in resp.text


def test_a_missing_file_is_404(bridge, session_with_files):
    resp = _file(bridge, session_with_files, "no-such.csv")
    assert resp.status_code == 404
    assert resp.json()["error"] == "file_not_found"


# -- the record ---------------------------------------------------------------


def test_a_database_of_the_previous_version_gets_the_new_columns(tmp_path):
    from jupyterhub_service.store import Store

    db = tmp_path / "bridge.sqlite"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE sessions (id VARCHAR(40) PRIMARY KEY, user_id VARCHAR(200), "
        "user_kind VARCHAR(10), user_name VARCHAR(200), client_ip VARCHAR(64), "
        "hub_user VARCHAR(100), server_name VARCHAR(40), dataset_id VARCHAR(100), "
        "dataset_name VARCHAR(200), dataset_title VARCHAR(500), dataset_url VARCHAR(1000), "
        "open_path VARCHAR(500), notebooks JSON, status VARCHAR(10), message VARCHAR(1000), "
        "limits JSON, cache_keys JSON, from_pool BOOLEAN, started_at DATETIME, "
        "expires_at DATETIME, ended_at DATETIME)")
    con.execute("INSERT INTO sessions (id, user_id, user_kind, hub_user, server_name, dataset_id, "
                "status, started_at, expires_at) VALUES ('old', 'u', 'user', 'ckan-u', 'd-1', "
                "'ds', 'ready', '2030-01-01 00:00:00', '2030-01-01 00:20:00')")
    con.commit()
    con.close()

    store = Store(f"sqlite:///{db}")
    rec = store.get("old")
    assert rec.notebook_resource_id is None and rec.portal_url is None
    store.update("old", portal_url="http://127.0.0.1:5000")
    assert Store(f"sqlite:///{db}").get("old").portal_url == "http://127.0.0.1:5000"
