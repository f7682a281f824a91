"""Notebook resources and admin control (issue 5), through the real CKAN
(gunicorn), bridge, hub and JupyterLab.

- "Run this notebook" opens JupyterLab with the notebook, byte-identical.
- Settings changed on CKAN's admin config page reach the bridge and govern
  the very next launch, with nothing restarted; lowering a limit never ends a
  running session.
- ``ckan jupyter ...`` against the real bridge.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from dev.testing import Browser, Lab

P = "ckanext.jupyternotebook."


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def notebook_resource(portal) -> dict:
    pkg = portal.sysadmin.action.package_show(id=portal.dataset)
    return next(r for r in pkg["resources"]
                if r["format"].lower() == "ipynb"
                or r["url"].lower().endswith(".ipynb"))


def original_bytes(portal, resource) -> bytes:
    resp = requests.get(resource["url"], timeout=30,
                        headers={"Authorization": portal.seed["api_token"]})
    resp.raise_for_status()
    return resp.content


def lab_path(url: str) -> str:
    m = re.search(r"/lab/tree/(.+?)(?:\?|$)", url)
    assert m, url
    return unquote(m.group(1))


@pytest.fixture
def admin(portal, bridge):
    """Saves settings on CKAN's admin config page as a sysadmin would (API
    token, so no CSRF form round trip); CKAN's Reset afterwards."""
    headers = {"Authorization": portal.seed["api_token"]}

    def save(**values) -> requests.Response:
        data = {P + k: str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in values.items()}
        data["save"] = ""
        resp = requests.post(f"{portal.url}/ckan-admin/config", data=data,
                             headers=headers, allow_redirects=False,
                             timeout=60)
        assert resp.status_code in (302, 303), resp.text[:2000]
        return resp

    yield save
    requests.post(f"{portal.url}/ckan-admin/reset_config", headers=headers,
                  allow_redirects=False, timeout=60)


def live(bridge) -> list[dict]:
    return [s for s in bridge.sessions() if s["status"] not in ("ended",)]


def _pids(hub_stack) -> dict:
    return {name: hub_stack.running(name) for name in ("ckan", "hub")}


# --------------------------------------------------------------------------
# the notebook resource


def test_the_preview_renders_the_demo_notebook(portal):
    res = notebook_resource(portal)
    resp = requests.get(f"{portal.url}/dataset/{portal.dataset}/resource/"
                        f"{res['id']}/jupyter/preview", timeout=60)
    assert resp.status_code == 200
    assert resp.headers["Content-Security-Policy"].startswith("sandbox;")
    assert 'class="cell' in resp.text
    assert "<script" not in resp.text.lower()


def test_run_this_notebook_opens_jupyterlab_with_the_notebook_byte_identical(
        portal, bridge):
    res = notebook_resource(portal)
    browser = Browser()
    page = browser.get(f"{portal.url}/dataset/{portal.dataset}/resource/"
                       f"{res['id']}")
    assert page.status_code == 200
    final = browser.submit(page, rf"/resource/{res['id']}/jupyter$")
    assert final.status_code == 200, final.text[:500]
    assert "ticket" not in final.url
    path = lab_path(final.url)
    assert path.endswith(".ipynb")
    lab = Lab.from_url(browser.http, final.url)
    assert lab.read(path) == original_bytes(portal, res)


def test_run_this_notebook_again_opens_the_visitors_edited_copy(portal,
                                                                 bridge):
    res = notebook_resource(portal)
    browser = Browser()
    page = browser.get(f"{portal.url}/dataset/{portal.dataset}/resource/"
                       f"{res['id']}")
    first = browser.submit(page, rf"/resource/{res['id']}/jupyter$")
    lab = Lab.from_url(browser.http, first.url)
    path = lab_path(first.url)
    edited = lab.read(path).replace(b'"cells": [', b'"cells": [ ', 1)
    assert lab.write(path, edited.decode()).status_code in (200, 201)

    page = browser.get(f"{portal.url}/dataset/{portal.dataset}/resource/"
                       f"{res['id']}")
    again = browser.submit(page, rf"/resource/{res['id']}/jupyter$")
    assert again.status_code == 200, "\n".join([h.url for h in again.history] + [again.url])
    assert Lab.from_url(browser.http, again.url).base == lab.base
    assert lab.read(path) == edited


# --------------------------------------------------------------------------
# admin settings


def test_lowering_max_guests_on_the_admin_page_refuses_the_next_guest_at_once(
        portal, bridge, hub_stack, admin):
    pids = _pids(hub_stack)
    admin(max_guests=2)
    assert bridge.call("GET", "/api/settings").json()["max_guests"] == 2

    first = Browser()
    assert first.open_in_jupyter(portal.url, portal.dataset).status_code == 200

    admin(max_guests=1)
    assert bridge.call("GET", "/api/settings").json()["max_guests"] == 1
    second = Browser().open_in_jupyter(portal.url, portal.dataset)
    assert second.status_code == 429

    # the running guest session was not touched by the lower limit
    running = live(bridge)
    assert len(running) == 1 and running[0]["status"] == "ready"
    assert _pids(hub_stack) == pids  # nothing was restarted


def test_changing_the_timeout_on_the_admin_page_changes_new_sessions_only(
        portal, bridge, hub_stack, admin):
    pids = _pids(hub_stack)
    admin(timeout=1200)
    assert Browser().open_in_jupyter(portal.url,
                                      portal.dataset).status_code == 200
    [before] = live(bridge)
    lifetime = _parse(before["expires_at"]) - _parse(before["started_at"])
    assert lifetime == dt.timedelta(seconds=1200)

    admin(timeout=600)
    assert Browser().open_in_jupyter(portal.url,
                                      portal.dataset).status_code == 200
    sessions = {s["id"]: s for s in live(bridge)}
    [new_id] = set(sessions) - {before["id"]}
    new = sessions[new_id]
    assert _parse(new["expires_at"]) - _parse(new["started_at"]) \
        == dt.timedelta(seconds=600)
    assert sessions[before["id"]]["expires_at"] == before["expires_at"]
    assert _pids(hub_stack) == pids


def test_ckan_admin_reset_pushes_the_deployed_values_to_the_bridge(
        portal, bridge, admin):
    admin(max_sessions_per_user=1)
    assert bridge.call("GET", "/api/settings").json()[
        "max_sessions_per_user"] == 1
    resp = requests.post(f"{portal.url}/ckan-admin/reset_config",
                         headers={"Authorization": portal.seed["api_token"]},
                         allow_redirects=False, timeout=60)
    assert resp.status_code in (302, 303)
    assert bridge.call("GET", "/api/settings").json()[
        "max_sessions_per_user"] == 3  # the deployed default


def test_non_sysadmin_gets_403_on_the_admin_pages_and_settings_actions(portal):
    suffix = uuid.uuid4().hex[:8]
    user = portal.sysadmin.action.user_create(
        name=f"plain-user-{suffix}", email=f"plain-{suffix}@example.org",
        password="a-long-enough-password-1")
    token = portal.sysadmin.action.api_token_create(
        user=user["name"], name="t")["token"]
    for url in ("/ckan-admin/jupyter", "/ckan-admin/config"):
        assert requests.get(portal.url + url, headers={"Authorization": token},
                            timeout=30).status_code == 403
    for action in ("jupyternotebook_settings_show",
                   "jupyternotebook_settings_update"):
        resp = requests.post(f"{portal.url}/api/3/action/{action}",
                             json={"max_guests": 1},
                             headers={"Authorization": token}, timeout=30)
        assert resp.status_code == 403


def test_the_admin_sessions_page_lists_a_live_session_and_stops_it(
        portal, bridge):
    browser = Browser()
    assert browser.open_in_jupyter(portal.url,
                                   portal.dataset).status_code == 200
    [session] = live(bridge)
    headers = {"Authorization": portal.seed["api_token"]}
    page = requests.get(f"{portal.url}/ckan-admin/jupyter", headers=headers,
                        timeout=60)
    assert page.status_code == 200
    assert f'data-session-id="{session["id"]}"' in page.text
    assert 'data-health="ok"' in page.text
    resp = requests.post(
        f"{portal.url}/ckan-admin/jupyter/session/{session['id']}/stop",
        headers=headers, allow_redirects=False, timeout=120)
    assert resp.status_code in (302, 303)
    status = bridge.call("GET", f"/api/sessions/{session['id']}")
    assert status.status_code == 404 or status.json()["status"] in (
        "stopping", "ended")


# --------------------------------------------------------------------------
# the CLI against the real bridge, run as an operator would: `ckan -c ...`


def _ckan_cli(portal, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "ckan"), "-c", str(portal.stack.ini),
         "jupyter", *args],
        env={**os.environ, **portal.stack.plugin_env()},
        capture_output=True, text=True, timeout=120)


def test_cli_status_sessions_and_stop_against_the_real_bridge(portal, bridge):
    browser = Browser()
    assert browser.open_in_jupyter(portal.url,
                                   portal.dataset).status_code == 200
    [session] = live(bridge)

    status = _ckan_cli(portal, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "bridge: ok" in status.stdout and "guests: 1/" in status.stdout

    listing = _ckan_cli(portal, "sessions")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert session["id"] in listing.stdout

    stopped = _ckan_cli(portal, "stop", session["id"])
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    after = bridge.call("GET", f"/api/sessions/{session['id']}")
    assert after.status_code == 404 or after.json()["status"] in (
        "stopping", "ended")


def test_cli_push_settings_sends_ckans_values_to_the_real_bridge(portal,
                                                                 bridge):
    bridge.put_settings(max_sessions=7)  # behind CKAN's back
    result = _ckan_cli(portal, "push-settings")
    assert result.returncode == 0, result.stdout + result.stderr
    # CKAN's value: neither the admin page nor the environment sets it
    assert bridge.call("GET", "/api/settings").json()["max_sessions"] == 200
