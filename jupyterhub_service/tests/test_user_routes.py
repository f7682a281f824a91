"""The visitor's routes of the bridge (user_routes.py), through the hub's
proxy as a browser calls them: only the caller's own session, never the
internal API, and Download my work gives the home without what the session
planted to reach outside it."""

from __future__ import annotations

import io
import json
import zipfile

import requests

from dev.testing import open_lab, server_path

NOTEBOOK = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["edited in the test"]}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def visitor_url(hub_stack, server_name: str, action: str = "") -> str:
    return f"{hub_stack.hub_url}/services/bridge/session/{server_name}" + (f"/{action}" if action else "")


def session_info(lab, hub_stack) -> dict:
    _user, server_name = server_path(lab.base)
    resp = lab.http.get(visitor_url(hub_stack, server_name), timeout=60)
    assert resp.status_code == 200, (resp.status_code, resp.url, resp.text[:300])
    return resp.json()


def test_the_session_answer_is_the_visitors_own_with_the_bridges_time_left(bridge, hub_stack):
    sess = bridge.launch("ds-visitor-info").json()
    lab = open_lab(sess)
    info = session_info(lab, hub_stack)
    assert info["server_name"] == sess["server_name"]
    assert info["expires_at"] == sess["expires_at"]
    assert 1100 < info["seconds_left"] <= 1200
    assert info["user_kind"] == "guest"
    assert info["can_save"] is False and info["save_refusal"] == "login_required"
    assert "log in" in info["save_message"].lower() and "edit rights" in info["save_message"]
    assert info["can_extend"] is False and info["extend_refusal"] == "guests_cannot_extend"
    assert info["idle_timeout"] == 0 and info["idle_seconds_left"] is None
    assert info["dataset"]["title"] == "Dataset ds-visitor-info"
    assert info["xsrf_token"]


def test_the_internal_api_is_not_reachable_through_the_proxy(bridge, hub_stack):
    sess = bridge.launch("ds-visitor-proxy").json()
    lab = open_lab(sess)
    headers = {"Authorization": f"Bearer {bridge.token}"}
    # what the bridge answers on its own port, to recognise it
    assert "sessions" in bridge.call("GET", "/api/sessions").json()
    hub = hub_stack.hub_url
    for path in ("/api/sessions", "/services/bridge/api/sessions", "/services/bridge/../api/sessions",
                 "/services/bridge/%2e%2e/api/sessions", "/services/bridge/..%2fapi/sessions",
                 "/services/bridge//api/sessions", "/services/bridge/api/settings",
                 "/services/bridge/api/openapi.json"):
        for http in (requests.Session(), lab.http):
            resp = http.get(hub + path, headers=headers, timeout=30, allow_redirects=True)
            try:
                body = resp.json()
            except ValueError:
                body = None
            assert not (isinstance(body, dict) and ("sessions" in body or "max_guests" in body
                                                    or "openapi" in body)), (path, resp.status_code)
    put = lab.http.put(hub + "/services/bridge/../api/settings", headers=headers,
                       json={"max_guests": 0}, timeout=30)
    assert put.status_code != 200
    assert bridge.call("GET", "/api/settings").json()["max_guests"] == 10


def test_another_users_session_and_download_are_refused(bridge, hub_stack):
    mine = open_lab(bridge.launch("ds-visitor-a").json())
    theirs_sess = bridge.launch("ds-visitor-b").json()
    theirs = open_lab(theirs_sess)
    assert theirs.write("their-secret.txt", "not for you").status_code in (200, 201)
    name = theirs_sess["server_name"]
    for action in ("", "download"):
        resp = mine.http.get(visitor_url(hub_stack, name, action), timeout=60)
        assert resp.status_code == 404, (action, resp.status_code, resp.text[:200])
        assert resp.json()["error"] == "not_found"
        assert b"not for you" not in resp.content
    # and nobody signed in gets nothing but the hub's login
    anon = requests.get(visitor_url(hub_stack, name, "download"), timeout=60)
    assert b"not for you" not in anon.content
    assert "application/zip" not in anon.headers.get("Content-Type", "")


def test_posts_need_the_xsrf_token_and_extend_follows_the_settings(bridge, hub_stack):
    sess = bridge.launch("ds-visitor-extend").json()
    lab = open_lab(sess)
    info = session_info(lab, hub_stack)
    url = visitor_url(hub_stack, sess["server_name"], "extend")
    no_token = lab.http.post(url, timeout=60)
    assert no_token.status_code == 403
    assert no_token.json()["error"] == "not_logged_in"
    refused = lab.http.post(url, headers={"X-XSRFToken": info["xsrf_token"]}, timeout=60)
    assert refused.status_code == 403 and refused.json()["error"] == "guests_cannot_extend"
    bridge.put_settings(guest_extensions=True)
    extended = lab.http.post(url, headers={"X-XSRFToken": info["xsrf_token"]}, timeout=60)
    assert extended.status_code == 200, extended.text
    assert extended.json()["seconds_left"] > info["seconds_left"] + 1000
    record = bridge.call("GET", f"/api/sessions/{sess['id']}").json()
    assert record["expires_at"] == extended.json()["expires_at"] != info["expires_at"]


def test_a_guest_cannot_save_to_the_portal(bridge, hub_stack):
    sess = bridge.launch("ds-visitor-save").json()
    lab = open_lab(sess)
    info = session_info(lab, hub_stack)
    resp = lab.http.post(visitor_url(hub_stack, sess["server_name"], "save"),
                         headers={"X-XSRFToken": info["xsrf_token"]},
                         json={"path": "start_here.ipynb"}, timeout=60)
    assert resp.status_code == 403
    assert resp.json()["error"] == "login_required"
    assert "edit rights" in resp.json()["message"]


def test_download_is_the_home_without_data_caches_links_or_special_files(bridge, hub_stack):
    sess = bridge.launch("ds-visitor-zip").json()
    lab = open_lab(sess)
    assert lab.write("edited.ipynb", json.dumps(NOTEBOOK)).status_code in (200, 201)
    out, err = lab.execute(
        "import os\n"
        "os.makedirs('notes/deeper', exist_ok=True); open('notes/deeper/n.txt', 'w').write('kept')\n"
        "os.symlink('/etc/passwd', 'passwd-link')\n"
        "os.symlink('/', 'root-link')\n"
        "os.mkfifo('a-fifo')\n"
        "os.makedirs('.cache/pip', exist_ok=True); open('.cache/pip/x', 'w').write('cache')\n"
        "os.makedirs('.local/lib', exist_ok=True); open('.local/lib/y', 'w').write('local')\n"
        "print('planted')\n")
    assert err is None and "planted" in out, (out, err)
    resp = lab.http.get(visitor_url(hub_stack, sess["server_name"], "download"), timeout=120)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"] == "application/zip"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    zf = zipfile.ZipFile(io.BytesIO(resp.content))
    names = zf.namelist()
    assert json.loads(zf.read("edited.ipynb")) == NOTEBOOK
    assert zf.read("notes/deeper/n.txt") == b"kept"
    assert "start_here.ipynb" in names
    assert not [n for n in names if n.split("/")[0] in ("data", ".cache", ".local")], names
    assert not [n for n in names if "link" in n or "fifo" in n], names
    assert b"root:" not in resp.content


def test_the_services_own_url_answers_the_hubs_health_check(hub_stack):
    # the hub GETs /services/bridge/ once a minute (check_services_health);
    # it answered 404, logged as a warning each time
    resp = requests.get(f"{hub_stack.hub_url}/services/bridge/", timeout=30,
                        allow_redirects=False)
    assert resp.status_code == 200, (resp.status_code, resp.text[:200])
    assert resp.json() == {"service": "bridge"}
