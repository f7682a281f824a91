"""One-time launch tickets: the unit, and the authenticator in a real hub."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests

from jupyterhub_service import launch_ticket

from dev.testing import xsrf_for

KEY = launch_ticket.ticket_key("secret")


def test_a_genuine_ticket_verifies():
    t = launch_ticket.issue(KEY, "guest-1", "d-1", "/user/guest-1/d-1/lab")
    payload = launch_ticket.verify(KEY, t)
    assert (payload["u"], payload["s"], payload["n"]) == ("guest-1", "d-1", "/user/guest-1/d-1/lab")


@pytest.mark.parametrize("ticket", [None, "", "garbage", "a.b.c", "e30.AAAA"])
def test_missing_or_malformed_tickets_are_refused(ticket):
    with pytest.raises(launch_ticket.TicketError):
        launch_ticket.verify(KEY, ticket)


def test_a_forged_signature_is_refused():
    t = launch_ticket.issue(launch_ticket.ticket_key("other"), "guest-1", "d-1", "/")
    with pytest.raises(launch_ticket.TicketError, match="signature"):
        launch_ticket.verify(KEY, t)


def test_a_ticket_older_than_a_minute_is_refused():
    t = launch_ticket.issue(KEY, "guest-1", "d-1", "/", now=time.time() - 61)
    with pytest.raises(launch_ticket.TicketError, match="expired"):
        launch_ticket.verify(KEY, t)


# -- through the real hub -----------------------------------------------------


def _ticket_url(hub_stack, ticket, next_path=None):
    q = {"ticket": ticket}
    if next_path is not None:
        q["next"] = next_path
    return f"{hub_stack.hub_url}/hub/login?" + urlencode(q)


@pytest.fixture
def session(bridge):
    return bridge.launch("ds-ticket", user_id="guest-ticket").json()


def test_launch_url_lands_in_jupyterlab_without_the_ticket(session, hub_stack):
    http = requests.Session()
    final = http.get(session["launch_url"], timeout=60)
    assert final.status_code == 200
    assert "ticket" not in final.url
    assert urlparse(final.url).path.endswith(
        f"/user/{session['hub_user']}/{session['server_name']}/lab/tree/start_here.ipynb")
    assert "JupyterLab" in final.text or "jupyter-config-data" in final.text


def test_a_used_ticket_is_refused(session):
    assert requests.get(session["launch_url"], timeout=60).status_code == 200
    replay = requests.get(session["launch_url"], timeout=60)
    assert replay.status_code == 403
    assert "already been used" in replay.text


def test_expired_forged_and_missing_tickets_get_403(session, hub_stack):
    key = launch_ticket.ticket_key(hub_stack.token)
    nxt = f"/user/{session['hub_user']}/{session['server_name']}/lab"
    expired = launch_ticket.issue(key, session["hub_user"], session["server_name"], nxt,
                                  now=time.time() - 120)
    forged = launch_ticket.issue(launch_ticket.ticket_key("guess"), session["hub_user"],
                                 session["server_name"], nxt)
    for url in (_ticket_url(hub_stack, expired), _ticket_url(hub_stack, forged),
                f"{hub_stack.hub_url}/hub/login", f"{hub_stack.hub_url}/hub/login?next={nxt}"):
        assert requests.get(url, timeout=30, allow_redirects=False).status_code == 403, url


def test_a_ticket_cannot_be_pointed_at_another_page(session, bridge, hub_stack):
    other = bridge.launch("ds-ticket-other", user_id="guest-other").json()
    ticket = parse_qs(urlparse(session["launch_url"]).query)["ticket"][0]
    elsewhere = f"/user/{other['hub_user']}/{other['server_name']}/lab"
    resp = requests.get(_ticket_url(hub_stack, ticket, elsewhere), timeout=30, allow_redirects=False)
    assert resp.status_code == 403


# Which login a second ticket leaves the browser with (asked first, or at
# once) is tested in test_authenticator.py.


def test_hub_users_cannot_start_servers_themselves(session, hub_stack):
    http = requests.Session()
    assert http.get(session["launch_url"], timeout=60).status_code == 200
    user = session["hub_user"]
    xsrf = xsrf_for(http, "/hub/api/")
    api = http.post(f"{hub_stack.hub_url}/hub/api/users/{user}/servers/extra",
                    headers={"X-XSRFToken": xsrf}, timeout=30)
    assert api.status_code == 403
    spawn_page = http.get(f"{hub_stack.hub_url}/hub/spawn/{user}/extra", timeout=30)
    assert spawn_page.status_code == 403
    home = http.get(f"{hub_stack.hub_url}/hub/home", timeout=30)
    assert home.status_code == 200
    assert "Start My Server" not in home.text and 'id="start"' not in home.text
