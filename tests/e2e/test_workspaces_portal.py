"""Workspaces that last, seen from CKAN (issue 13), through the real CKAN
(gunicorn), bridge, hub and JupyterLab: the dashboard's section with
Download and Delete, the admin page's totals, ``ckan jupyter workspaces``.
(The workspace itself, across datasets, users, guests, the quota and the
retention: jupyterhub_service/tests/test_workspaces.py.)"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
import requests

from dev.testing import Browser, Lab, open_lab

P = "ckanext.jupyternotebook."
PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def workspaces_on(portal, bridge):
    """Workspaces turned on as a sysadmin does, on CKAN's config page (CKAN
    pushes it to the bridge); every workspace removed and CKAN's Reset
    after."""
    headers = {"Authorization": portal.seed["api_token"]}
    resp = requests.post(f"{portal.url}/ckan-admin/config", headers=headers,
                         data={P + "persistent_workspaces": "true", P + "workspace_quota": "64M",
                               "save": ""}, allow_redirects=False, timeout=60)
    assert resp.status_code in (302, 303), resp.text[:2000]
    assert bridge.call("GET", "/api/settings").json()["persistent_workspaces"] is True
    yield
    bridge.end_all()
    for ws in bridge.call("GET", "/api/workspaces").json()["workspaces"]:
        bridge.call("DELETE", f"/api/workspaces/{ws['user_id']}")
    requests.post(f"{portal.url}/ckan-admin/reset_config", headers=headers,
                  allow_redirects=False, timeout=60)


def new_user(portal) -> tuple[dict, str]:
    suffix = uuid.uuid4().hex[:8]
    user = portal.sysadmin.action.user_create(
        name=f"ws-user-{suffix}", email=f"ws-{suffix}@example.org", password=PASSWORD)
    token = portal.sysadmin.action.api_token_create(user=user["name"], name="ws")["token"]
    return user, token


def session_with_a_file(portal, token: str, name: str, text: str) -> tuple[dict, Lab]:
    sess = portal.api(token).action.jupyternotebook_session_create(id=portal.dataset)
    lab = open_lab(sess)
    out, err = lab.execute(f"open('work/{name}', 'w').write({text!r})")
    assert err is None, err
    return sess, lab


def test_the_dashboard_lists_the_workspace_and_downloads_it(portal, bridge, workspaces_on):
    user, token = new_user(portal)
    sess, _lab = session_with_a_file(portal, token, "hello.txt", "from my workspace")
    headers = {"Authorization": token}
    page = requests.get(f"{portal.url}/dashboard/jupyter", headers=headers, timeout=60)
    assert page.status_code == 200
    assert "My workspace" in page.text
    assert "in use now" in page.text  # its session is live
    assert "jupyternotebook-workspace-size" in page.text

    resp = requests.get(f"{portal.url}/dashboard/jupyter/workspace/download",
                        headers=headers, timeout=120)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/zip"
    assert zipfile.ZipFile(io.BytesIO(resp.content)).read("work/hello.txt") == b"from my workspace"

    # another user gets their own (none), and never this one's
    _other, other_token = new_user(portal)
    refused = requests.get(f"{portal.url}/dashboard/jupyter/workspace/download",
                           params={"user_id": user["id"]},
                           headers={"Authorization": other_token}, timeout=60)
    assert refused.status_code == 403
    none = requests.get(f"{portal.url}/dashboard/jupyter/workspace/download",
                        headers={"Authorization": other_token}, timeout=60)
    assert none.status_code == 404


def test_delete_is_refused_while_a_session_runs_and_then_deletes(portal, bridge, workspaces_on):
    user, token = new_user(portal)
    sess, _lab = session_with_a_file(portal, token, "gone.txt", "soon deleted")
    headers = {"Authorization": token}
    live = requests.post(f"{portal.url}/dashboard/jupyter/workspace/delete", headers=headers,
                         allow_redirects=True, timeout=60)
    assert "stop your notebook sessions first" in live.text
    assert bridge.call("GET", "/api/workspaces", params={"user_id": user["id"]}).json()["workspaces"]

    portal.api(token).action.jupyternotebook_session_delete(id=sess["id"])
    done = requests.post(f"{portal.url}/dashboard/jupyter/workspace/delete", headers=headers,
                         allow_redirects=True, timeout=60)
    assert "Your workspace and its files are deleted." in done.text
    assert bridge.call("GET", "/api/workspaces",
                       params={"user_id": user["id"]}).json()["workspaces"] == []


def test_delete_from_a_logged_in_browser_needs_the_forms_csrf_token(portal, bridge, workspaces_on):
    user, token = new_user(portal)
    sess, _lab = session_with_a_file(portal, token, "kept.txt", "kept")
    portal.api(token).action.jupyternotebook_session_delete(id=sess["id"])

    browser = Browser()
    login = browser.get(f"{portal.url}/user/login")
    # CKAN's login form posts to its own page (an empty action)
    browser.submit(login, r"^(/user/login)?$", {"login": user["name"], "password": PASSWORD})
    dashboard = browser.get(f"{portal.url}/dashboard/jupyter")
    assert "My workspace" in dashboard.text

    forged = browser.http.post(f"{portal.url}/dashboard/jupyter/workspace/delete",
                               allow_redirects=False, timeout=60)
    assert forged.status_code in (400, 403)
    assert bridge.call("GET", "/api/workspaces", params={"user_id": user["id"]}).json()["workspaces"]

    done = browser.submit(dashboard, r"/dashboard/jupyter/workspace/delete$")
    assert "Your workspace and its files are deleted." in done.text
    assert bridge.call("GET", "/api/workspaces",
                       params={"user_id": user["id"]}).json()["workspaces"] == []


def test_the_admin_page_shows_the_total_and_the_largest_workspaces(portal, bridge, workspaces_on):
    user, token = new_user(portal)
    sess, _lab = session_with_a_file(portal, token, "big.txt", "x" * 200_000)
    # ended: its size is the one measured when it let go, not a live one
    portal.api(token).action.jupyternotebook_session_delete(id=sess["id"])
    listed = bridge.call("GET", "/api/workspaces").json()["workspaces"]
    assert any(w["user_id"] == user["id"] and w["size"] >= 200_000 for w in listed)
    page = requests.get(f"{portal.url}/ckan-admin/jupyter",
                        headers={"Authorization": portal.seed["api_token"]}, timeout=60)
    assert page.status_code == 200
    assert f'data-workspace-user="{user["id"]}"' in page.text
    assert user["name"] in page.text
    assert f'data-workspaces-count="{len(listed)}"' in page.text
    assert f'data-workspaces-total="{sum(w["size"] for w in listed)}"' in page.text


def _ckan_cli(portal, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "ckan"), "-c", str(portal.stack.ini),
         "jupyter", *args],
        env={**os.environ, **portal.stack.plugin_env()},
        capture_output=True, text=True, timeout=120)


def test_cli_lists_and_deletes_workspaces(portal, bridge, workspaces_on):
    user, token = new_user(portal)
    sess, _lab = session_with_a_file(portal, token, "cli.txt", "cli")
    listing = _ckan_cli(portal, "workspaces")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert user["name"] in listing.stdout and "in use now" in listing.stdout

    busy = _ckan_cli(portal, "workspaces", "--delete", user["name"])
    assert busy.returncode == 1
    assert "stop your notebook sessions first" in busy.stderr

    portal.api(token).action.jupyternotebook_session_delete(id=sess["id"])
    deleted = _ckan_cli(portal, "workspaces", "--delete", user["name"])
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert f"deleted the workspace of {user['name']}" in deleted.stdout
    assert bridge.call("GET", "/api/workspaces",
                       params={"user_id": user["id"]}).json()["workspaces"] == []

    unknown = _ckan_cli(portal, "workspaces", "--delete", "no-such-user-at-all")
    assert unknown.returncode == 1
    assert "no such user" in unknown.stderr.lower()
