"""Workspaces on CKAN's pages (issue 13): the dashboard's section, Download
and Delete, who may use them, and the admin page's totals. The bridge is the
stub held to openapi.json; the real flow is tests/e2e/test_workspaces_portal.py."""
from __future__ import annotations

import re

import pytest

import ckan.plugins.toolkit as tk
from ckan.tests import factories

P = "ckanext.jupyternotebook."


def _auth(user):
    return {"Authorization": factories.APIToken(user=user["id"])["token"]}


def _workspace(stub, user_id, size=2048, in_use=False):
    stub.workspaces[user_id] = {
        "user_id": user_id, "size": size, "quota": 64 * 1024**2,
        "created_at": "2026-01-01T00:00:00Z", "last_used": "2026-01-02T10:00:00Z",
        "in_use": in_use}


def _csrf(app, url, **kwargs):
    page = app.get(url, **kwargs)
    match = re.search(r'name="_csrf_token" value="([^"]+)"', page.body)
    assert match, "no CSRF token on " + url
    return match.group(1)


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestDashboardWorkspace:
    @pytest.mark.ckan_config(P + "persistent_workspaces", "true")
    def test_shows_size_last_use_and_the_buttons(self, app, session_bridge):
        user = factories.User()
        _workspace(session_bridge, user["id"], size=3 * 1024**2)
        _workspace(session_bridge, "someone-else", size=9 * 1024**2)
        page = app.get(tk.url_for("jupyternotebook.dashboard"), headers=_auth(user))
        assert page.status_code == 200
        assert "My workspace" in page.body
        size = re.search(r'jupyternotebook-workspace-size">([^<]+)<', page.body).group(1)
        assert size.startswith("3") and "64" in size
        assert tk.url_for("jupyternotebook_workspace.download") in page.body
        assert tk.url_for("jupyternotebook_workspace.delete") in page.body
        asked = session_bridge.calls("GET", "/api/workspaces")
        assert [c["query"] for c in asked] == [{"user_id": [user["id"]]}]

    @pytest.mark.ckan_config(P + "persistent_workspaces", "true")
    def test_says_when_there_is_none_yet(self, app, session_bridge):
        user = factories.User()
        page = app.get(tk.url_for("jupyternotebook.dashboard"), headers=_auth(user))
        assert "You have no workspace yet" in page.body

    @pytest.mark.ckan_config(P + "persistent_workspaces", "false")
    def test_hidden_when_workspaces_are_off_and_there_is_none(self, app, session_bridge):
        user = factories.User()
        page = app.get(tk.url_for("jupyternotebook.dashboard"), headers=_auth(user))
        assert page.status_code == 200
        assert "My workspace" not in page.body

    @pytest.mark.ckan_config(P + "persistent_workspaces", "false")
    def test_an_existing_workspace_stays_reachable_when_they_are_turned_off(self, app, session_bridge):
        user = factories.User()
        _workspace(session_bridge, user["id"])
        page = app.get(tk.url_for("jupyternotebook.dashboard"), headers=_auth(user))
        assert "My workspace" in page.body

    @pytest.mark.ckan_config(P + "persistent_workspaces", "true")
    def test_the_bridge_down_leaves_the_page_with_a_warning(self, app, bridge_down):
        user = factories.User()
        page = app.get(tk.url_for("jupyternotebook.dashboard"), headers=_auth(user))
        assert page.status_code == 200
        assert "your workspace cannot be shown right now" in page.body

    def test_download_streams_the_bridges_zip(self, app, session_bridge):
        user = factories.User()
        _workspace(session_bridge, user["id"])
        session_bridge.workspace_zips[user["id"]] = b"PK-the-zip-bytes"
        resp = app.get(tk.url_for("jupyternotebook_workspace.download"), headers=_auth(user))
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/zip"
        assert "work.zip" in resp.headers["Content-Disposition"]
        assert resp.data == b"PK-the-zip-bytes"

    def test_a_user_cannot_download_another_users_workspace(self, app, session_bridge):
        user, other = factories.User(), factories.User()
        _workspace(session_bridge, other["id"])
        resp = app.get(tk.url_for("jupyternotebook_workspace.download", user_id=other["id"]),
                       headers=_auth(user))
        assert resp.status_code == 403
        assert session_bridge.calls("GET", f"/api/workspaces/{other['id']}/download") == []

    def test_a_sysadmin_downloads_anyones(self, app, session_bridge):
        sysadmin, other = factories.Sysadmin(), factories.User()
        _workspace(session_bridge, other["id"])
        resp = app.get(tk.url_for("jupyternotebook_workspace.download", user_id=other["name"]),
                       headers=_auth(sysadmin))
        assert resp.status_code == 200

    def test_anonymous_cannot_download(self, app, session_bridge):
        resp = app.get(tk.url_for("jupyternotebook_workspace.download"))
        assert resp.status_code == 403

    @pytest.mark.ckan_config(P + "persistent_workspaces", "true")
    def test_delete_with_the_forms_token_deletes(self, app, session_bridge):
        user = factories.User()
        _workspace(session_bridge, user["id"])
        token = _csrf(app, tk.url_for("jupyternotebook.dashboard"), headers=_auth(user))
        resp = app.post(tk.url_for("jupyternotebook_workspace.delete"),
                        data={"_csrf_token": token}, headers=_auth(user))
        assert "Your workspace and its files are deleted." in resp.body
        assert user["id"] not in session_bridge.workspaces

    @pytest.mark.ckan_config(P + "persistent_workspaces", "true")
    def test_delete_while_a_session_runs_says_to_stop_it(self, app, session_bridge):
        user = factories.User()
        _workspace(session_bridge, user["id"], in_use=True)
        session_bridge.add_session(user["id"], seconds_left=1200)
        token = _csrf(app, tk.url_for("jupyternotebook.dashboard"), headers=_auth(user))
        resp = app.post(tk.url_for("jupyternotebook_workspace.delete"),
                        data={"_csrf_token": token}, headers=_auth(user))
        assert "stop your notebook sessions first" in resp.body
        assert user["id"] in session_bridge.workspaces


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestWorkspaceActions:
    def test_a_user_lists_only_their_own(self, session_bridge):
        from ckan.tests import helpers
        user, other = factories.User(), factories.User()
        _workspace(session_bridge, user["id"])
        _workspace(session_bridge, other["id"])
        found = helpers.call_action("jupyternotebook_workspace_list",
                                    context={"user": user["name"], "ignore_auth": False})
        assert [w["user_id"] for w in found["workspaces"]] == [user["id"]]
        assert found["workspaces"][0]["user_name"] == user["name"]
        with pytest.raises(tk.NotAuthorized):
            helpers.call_action("jupyternotebook_workspace_list",
                                context={"user": user["name"], "ignore_auth": False},
                                user_id=other["id"])
        with pytest.raises(tk.NotAuthorized):
            helpers.call_action("jupyternotebook_workspace_list",
                                context={"user": user["name"], "ignore_auth": False}, all=True)

    def test_a_user_cannot_delete_another_users(self, session_bridge):
        from ckan.tests import helpers
        user, other = factories.User(), factories.User()
        _workspace(session_bridge, other["id"])
        with pytest.raises(tk.NotAuthorized):
            helpers.call_action("jupyternotebook_workspace_delete",
                                context={"user": user["name"], "ignore_auth": False},
                                user_id=other["id"])
        assert other["id"] in session_bridge.workspaces

    def test_all_gives_the_total_largest_first(self, session_bridge):
        from ckan.tests import helpers
        sysadmin = factories.Sysadmin()
        _workspace(session_bridge, "a", size=10)
        _workspace(session_bridge, "b", size=30)
        found = helpers.call_action("jupyternotebook_workspace_list",
                                    context={"user": sysadmin["name"]}, all=True)
        assert [w["user_id"] for w in found["workspaces"]] == ["b", "a"]
        assert found["total_size"] == 40 and found["count"] == 2


@pytest.mark.usefixtures("clean_db", "with_plugins")
def test_the_admin_page_shows_the_total_and_the_largest(app, session_bridge):
    sysadmin, user = factories.Sysadmin(), factories.User()
    _workspace(session_bridge, user["id"], size=5 * 1024**2)
    _workspace(session_bridge, "gone-user", size=1024)
    page = app.get("/ckan-admin/jupyter", headers=_auth(sysadmin))
    assert page.status_code == 200
    assert 'data-workspaces-count="2"' in page.body
    assert f'data-workspaces-total="{5 * 1024**2 + 1024}"' in page.body
    rows = re.findall(r'data-workspace-user="([^"]+)"', page.body)
    assert rows == [user["id"], "gone-user"]
    assert user["name"] in page.body
