"""Who gets into the hub: the ticket authenticator, its pending switches, the
ended-session pages, how long a login lasts and the bridge's role. Unit
tests of the authenticator, then the same through the real hub."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import runpy
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import requests
from traitlets.config import Config

from jupyterhub_service import launch_ticket
from jupyterhub_service.authenticator import TicketAuthenticator
from jupyterhub_service.store import PoolRecord, SessionRecord, utcnow

from dev.testing import Lab, forms, wait_until

CONFIG_FILE = Path(__file__).resolve().parents[1] / "jupyterhub_config.py"


# -- authenticate() and refresh_user() on their own ---------------------------


@pytest.fixture
def auth(tmp_path):
    return TicketAuthenticator(ticket_secret="secret", bridge_db_url=f"sqlite:///{tmp_path}/bridge.sqlite")


def _authenticate(auth, data):
    return asyncio.run(auth.authenticate(None, data))


@pytest.mark.parametrize("data", [
    {"ticket": {"u": "ckan-x"}},
    {"ticket": {"u": "ckan-x", "s": "d-1", "n": "/", "iat": 0, "nonce": "n"}},
    {"switch": {"u": "ckan-x"}},
    {"username": "ckan-x", "password": "x"},
    {"ticket": ["ckan-x"]},
    None,
    "ckan-x",
])
def test_authenticate_gives_no_user_for_anything_but_a_ticket_string(auth, data):
    assert _authenticate(auth, data) is None


def test_authenticate_refuses_forged_expired_and_replayed_ticket_strings(auth):
    forged = launch_ticket.issue(launch_ticket.ticket_key("guess"), "ckan-x", "d-1", "/")
    expired = launch_ticket.issue(auth.key, "ckan-x", "d-1", "/", now=time.time() - 61)
    assert _authenticate(auth, {"ticket": forged}) is None
    assert _authenticate(auth, {"ticket": expired}) is None
    genuine = launch_ticket.issue(auth.key, "ckan-x", "d-1", "/")
    assert _authenticate(auth, {"ticket": genuine}) == {"name": "ckan-x"}
    assert _authenticate(auth, {"ticket": genuine}) is None


def test_a_pending_switch_is_not_a_ticket_and_a_ticket_is_not_a_switch(auth):
    ticket = launch_ticket.issue(auth.key, "ckan-x", "d-1", "/")
    switch = launch_ticket.issue(auth.switch_key, "ckan-x", "d-1", "/")
    assert _authenticate(auth, {"switch": ticket}) is None
    assert _authenticate(auth, {"ticket": switch}) is None
    assert _authenticate(auth, {"switch": switch}) == {"name": "ckan-x"}


class _User:
    def __init__(self, name):
        self.name = name


def _session(hub_user: str, status: str) -> SessionRecord:
    now = utcnow()
    return SessionRecord(
        id=uuid.uuid4().hex, user_id="u", user_kind="user", hub_user=hub_user, server_name="d-1",
        dataset_id="ds", status=status, started_at=now, expires_at=now + dt.timedelta(minutes=20))


def test_refresh_user_keeps_a_login_only_while_its_user_has_a_live_session(auth):
    refresh = lambda name: asyncio.run(auth.refresh_user(_User(name)))  # noqa: E731
    assert refresh("ckan-a") is False
    auth.store.add(_session("ckan-a", "ended"))
    assert refresh("ckan-a") is False
    auth.store.add(_session("ckan-a", "ready"))
    assert refresh("ckan-a") is True
    auth.store.pool_add(PoolRecord(hub_user="guest-pool", server_name="d-p", slot_dir="/x",
                                   status="starting", created_at=utcnow()))
    assert refresh("guest-pool") is True


# -- the configuration --------------------------------------------------------


@pytest.fixture
def hub_config(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERNOTEBOOK_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CKAN_JUPYTERHUB_API_TOKEN", "x")
    monkeypatch.setenv("CKAN_JUPYTERHUB_SPAWNER", "local")
    monkeypatch.setenv("CKAN_JUPYTERHUB_TIMEOUT", "600")
    c = Config()
    runpy.run_path(str(CONFIG_FILE), init_globals={"get_config": lambda: c})
    return c


def test_the_bridge_role_holds_exactly_the_scopes_the_bridge_uses(hub_config):
    (role,) = [r for r in hub_config.JupyterHub.load_roles if r["name"] == "bridge"]
    assert sorted(role["scopes"]) == ["access:servers", "admin:users", "servers", "tokens"]


def test_logins_outlive_the_start_timeout_and_are_ended_by_refresh(hub_config):
    # a login is ended by refresh_user with its last session, so the cookie
    # and OAuth token must not expire first when `timeout` is raised later
    assert hub_config.JupyterHub.cookie_max_age_days >= 1
    assert hub_config.JupyterHub.oauth_token_expires_in >= 86400
    assert 0 < hub_config.TicketAuthenticator.auth_refresh_age <= 60


def test_session_servers_load_the_busy_kernel_extension(hub_config):
    args = hub_config.Spawner.args
    assert args[args.index("--ServerApp.jpserver_extensions") + 1] == "jupyterhub_service.busy_kernels=True"


# -- through the real hub -----------------------------------------------------


def test_in_the_running_hub_the_bridge_may_mint_tokens_and_users_may_not(hub_stack):
    # the bridge mints a token for one session server to read its files
    # (session_server_files.py); a user must never mint one of their own
    db = sqlite3.connect(hub_stack.hub_state / "jupyterhub.sqlite")
    try:
        roles = dict(db.execute("select name, scopes from roles where name in ('bridge', 'user')"))
    finally:
        db.close()
    bridge, user = json.loads(roles["bridge"]), json.loads(roles["user"])
    assert {"tokens", "admin:users", "servers"} <= set(bridge)
    assert not [s for s in user if s.split("!")[0] in ("tokens", "read:tokens")], user


def _launch(bridge, dataset, **kw) -> dict:
    resp = bridge.launch(dataset, **kw)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def test_the_token_api_identifies_no_one_from_forged_ticket_claims(bridge, hub_stack):
    """JupyterHub hands the body's ``auth`` to authenticate() on a cookieless
    token request; the user exists (a CKAN user with a live session)."""
    s = _launch(bridge, "ds-forge", kind="user", user_id="forge-1")
    user = s["hub_user"]
    forged_string = launch_ticket.issue(launch_ticket.ticket_key("guess"), user, s["server_name"], "/")
    for auth in ({"ticket": {"u": user}}, {"ticket": {"u": user, "s": s["server_name"]}},
                 {"ticket": forged_string}, {"switch": {"u": user}}):
        resp = requests.post(f"{hub_stack.hub_url}/hub/api/users/{user}/tokens",
                             json={"auth": auth, "note": "forged"}, timeout=30)
        assert resp.status_code == 403, (auth, resp.text)
        # refused before any user was identified (the old code named the
        # user and was stopped only by the user role lacking `tokens`)
        # JupyterHub 6 answers this 403 with "message": null
        assert user not in (resp.json()["message"] or ""), (auth, resp.text)
        assert "token" not in resp.json()


def test_a_login_post_with_forged_ticket_data_sets_no_login(bridge, hub_stack):
    s = _launch(bridge, "ds-forge-post", kind="user", user_id="forge-2")
    http = requests.Session()
    page = http.get(f"{hub_stack.hub_url}/hub/login", timeout=30)  # gets an _xsrf cookie
    assert page.status_code == 403
    xsrf = http.cookies.get("_xsrf", path="/hub/")
    assert xsrf  # so the POSTs below pass the hub's _xsrf check and reach the handler
    for data in ({"ticket": '{"u": "%s"}' % s["hub_user"]}, {"ticket": "e30.AAAA", "u": s["hub_user"]}):
        resp = http.post(f"{hub_stack.hub_url}/hub/login", data={**data, "_xsrf": xsrf},
                         timeout=30, allow_redirects=False)
        assert resp.status_code == 403, resp.text
    assert http.get(f"{hub_stack.hub_url}/hub/api/user", timeout=30).status_code == 403


def _who(http, hub_stack) -> str | None:
    resp = http.get(f"{hub_stack.hub_url}/hub/api/user", timeout=30)
    return resp.json()["name"] if resp.status_code == 200 else None


def test_a_ticket_for_another_user_asks_before_switching_a_browser_with_a_live_session(bridge, hub_stack):
    mine = _launch(bridge, "ds-mine", user_id="guest-mine")
    theirs = _launch(bridge, "ds-theirs", user_id="guest-theirs")
    http = requests.Session()
    assert http.get(mine["launch_url"], timeout=60).status_code == 200
    assert _who(http, hub_stack) == mine["hub_user"]

    page = http.get(theirs["launch_url"], timeout=60)
    assert page.status_code == 200
    assert "Switch to another notebook session?" in page.text
    assert "Dataset ds-mine" in page.text and "Dataset ds-theirs" in page.text
    assert _who(http, hub_stack) == mine["hub_user"]
    # the ticket was spent on arrival: a replay cannot skip the question
    assert requests.get(theirs["launch_url"], timeout=60).status_code == 403

    (form,) = [f for f in forms(page.text) if f["id"] == "switch-session"]
    action = urljoin(page.url, form["action"])
    forged = http.post(action, data={}, timeout=30, allow_redirects=False)
    assert forged.status_code == 403  # no _xsrf: a cross-site form cannot switch
    assert _who(http, hub_stack) == mine["hub_user"]

    final = http.post(action, data=form["fields"], timeout=120)
    assert final.status_code == 200
    assert urlparse(final.url).path.startswith(f"/user/{theirs['hub_user']}/{theirs['server_name']}/lab")
    assert _who(http, hub_stack) == theirs["hub_user"]


def test_a_browser_whose_login_has_no_live_session_left_is_switched_at_once(bridge, hub_stack):
    old = _launch(bridge, "ds-old", kind="user", user_id="switch-old")
    http = requests.Session()
    assert http.get(old["launch_url"], timeout=60).status_code == 200
    assert bridge.call("DELETE", f"/api/sessions/{old['id']}").status_code == 204
    new = _launch(bridge, "ds-new", user_id="guest-switch-new")
    final = http.get(new["launch_url"], timeout=60)
    assert final.status_code == 200
    assert urlparse(final.url).path.startswith(f"/user/{new['hub_user']}/{new['server_name']}/lab")
    assert _who(http, hub_stack) == new["hub_user"]


def test_the_ended_page_names_the_dataset_only_to_the_browser_that_opened_it(bridge, hub_stack):
    s = _launch(bridge, "ds-secret-title", kind="user", user_id="ended-owner")
    owner = requests.Session()
    assert owner.get(s["launch_url"], timeout=60).status_code == 200
    assert bridge.call("DELETE", f"/api/sessions/{s['id']}").status_code == 204
    url = f"{hub_stack.hub_url}/hub/login?next=/user/{s['hub_user']}/{s['server_name']}/lab"

    stranger = requests.get(url, timeout=30)
    assert stranger.status_code == 410
    assert "This notebook session has ended" in stranger.text
    assert "Dataset ds-secret-title" not in stranger.text
    assert "ds-secret-title" not in stranger.text

    mine = owner.get(url, timeout=30)
    assert mine.status_code == 410
    assert "Back to Dataset ds-secret-title" in mine.text


def test_the_not_running_page_names_the_ended_dataset_to_its_owner(bridge, hub_stack):
    first = _launch(bridge, "ds-first", kind="user", user_id="not-running")
    second = _launch(bridge, "ds-second", kind="user", user_id="not-running")
    owner = requests.Session()
    assert owner.get(first["launch_url"], timeout=60).status_code == 200
    assert owner.get(second["launch_url"], timeout=60).status_code == 200
    assert bridge.call("DELETE", f"/api/sessions/{first['id']}").status_code == 204
    page = owner.get(f"{hub_stack.hub_url}/hub/user/{first['hub_user']}/{first['server_name']}/",
                     timeout=30)
    assert page.status_code == 424
    assert "Back to Dataset ds-first" in page.text, page.text[page.text.find("<h1"):][:800]


def test_a_login_ends_with_its_users_last_live_session(bridge, hub_stack):
    s = _launch(bridge, "ds-login-end", kind="user", user_id="login-end")
    http = requests.Session()
    assert http.get(s["launch_url"], timeout=60).status_code == 200
    assert _who(http, hub_stack) == s["hub_user"]
    assert bridge.call("DELETE", f"/api/sessions/{s['id']}").status_code == 204
    # the hub user stays (a CKAN user); its login must not
    assert wait_until(lambda: _who(http, hub_stack) is None, timeout=30)


def test_a_kernel_running_a_silent_cell_keeps_the_server_active(bridge, hub_stack):
    s = _launch(bridge, "ds-busy", user_id="guest-busy")
    http = requests.Session()
    final = http.get(s["launch_url"], timeout=60)
    assert final.status_code == 200
    lab = Lab.from_url(http, final.url)

    def last_activity() -> dt.datetime:
        r = http.get(lab.base + "api/status", timeout=30)  # not counted as activity
        r.raise_for_status()
        return dt.datetime.fromisoformat(r.json()["last_activity"].replace("Z", "+00:00"))

    def a_kernel_is_busy() -> bool:
        r = http.get(lab.base + "api/kernels", params={"no_track_activity": "1"}, timeout=30)
        return any(k["execution_state"] == "busy" for k in r.json())

    result = {}
    cell = threading.Thread(target=lambda: result.update(
        out=lab.execute("import time; print('start', flush=True); time.sleep(25); print('done')",
                        timeout=90)))
    cell.start()
    try:
        assert wait_until(a_kernel_is_busy, timeout=30)
        time.sleep(1)  # let the cell's first output arrive: activity it does count
        started = last_activity()
        # the cell prints nothing for 25 s; activity must keep moving anyway
        assert wait_until(lambda: last_activity() >= started + dt.timedelta(seconds=8), timeout=20)
    finally:
        cell.join(120)
    assert "done" in result["out"][0]
