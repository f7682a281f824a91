"""The action API, called over HTTP with an API token as ckanapi does."""
from __future__ import annotations

import pytest

from ckan.tests import factories


def _token(user):
    return factories.APIToken(user=user["id"])["token"]


def _call(app, action, token=None, status=200, **data):
    headers = {"Authorization": token} if token else {}
    response = app.post(f"/api/3/action/{action}", json=data,
                        headers=headers)
    assert response.status_code == status, response.body
    return response.json


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestSessionCreate:
    def test_a_user_with_a_token_gets_a_session_with_a_launch_url(
            self, app, session_bridge):
        user = factories.User()
        dataset = factories.Dataset()
        result = _call(app, "jupyternotebook_session_create", _token(user),
                       id=dataset["name"])["result"]
        assert result["launch_url"].startswith("http://127.0.0.1:8050/")
        assert result["dataset_id"] == dataset["id"]
        sent = session_bridge.calls("POST", "/api/sessions")[0]["json"]
        assert sent["user"] == {"kind": "user", "id": user["id"],
                                "name": user["name"]}

    def test_the_same_user_gets_the_same_session_again(self, app,
                                                       session_bridge):
        user = factories.User()
        dataset = factories.Dataset()
        token = _token(user)
        first = _call(app, "jupyternotebook_session_create", token,
                      id=dataset["id"])["result"]
        second = _call(app, "jupyternotebook_session_create", token,
                       id=dataset["id"])["result"]
        assert first["id"] == second["id"]

    def test_anonymous_cookieless_api_calls_create_no_session(
            self, app, session_bridge):
        # issue 10 item 8: each such call used to mint a fresh guest
        dataset = factories.Dataset()
        cookieless = app.test_client(use_cookies=False)
        for _ in range(12):
            response = cookieless.post(
                "/api/3/action/jupyternotebook_session_create",
                json={"id": dataset["id"]})
            assert response.status_code == 403
            assert "Open in Jupyter button" in \
                response.json["error"]["message"]
        assert session_bridge.calls("POST", "/api/sessions") == []

    def test_a_resource_of_another_dataset_is_invalid(self, app,
                                                      session_bridge):
        user = factories.User()
        dataset = factories.Dataset()
        other = factories.Resource(package_id=factories.Dataset()["id"])
        body = _call(app, "jupyternotebook_session_create", _token(user),
                     status=409, id=dataset["id"], resource_id=other["id"])
        assert "resource_id" in body["error"]
        assert not session_bridge.calls("POST", "/api/sessions")

    def test_a_missing_id_is_refused(self, app, session_bridge):
        user = factories.User()
        response = app.post("/api/3/action/jupyternotebook_session_create",
                            json={}, headers={"Authorization": _token(user)})
        assert response.status_code in (404, 409)
        assert not session_bridge.calls("POST", "/api/sessions")

    def test_capacity_reached_is_a_409_with_its_code(self, app,
                                                     session_bridge):
        session_bridge.respond("POST", "/api/sessions", 429, {
            "error": "user_limit", "message": "3 sessions already",
            "retry_after": 60})
        user = factories.User()
        body = _call(app, "jupyternotebook_session_create", _token(user),
                     status=409, id=factories.Dataset()["id"])
        assert body["error"]["code"] == ["user_limit"]

    def test_a_private_dataset_needs_read_permission(self, app,
                                                     session_bridge):
        user = factories.User()
        org = factories.Organization()
        dataset = factories.Dataset(private=True, owner_org=org["id"])
        _call(app, "jupyternotebook_session_create", _token(user),
              status=403, id=dataset["id"])
        assert not session_bridge.calls("POST", "/api/sessions")


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestResourceAuthorization:
    """Issue 10 item 21: grants are served with ignore_auth, so a launch
    grants only the resources ``resource_show`` allows for the visitor."""

    @pytest.fixture
    def refuse_resource(self, monkeypatch):
        """resource_show's auth refuses one resource, as a plugin's auth
        function may; records the user each check was made for."""
        from ckan import authz
        from ckan.logic.auth.get import resource_show as core_resource_show
        checked = {"users": [], "refused": None}

        def resource_show(context, data_dict):
            checked["users"].append(context.get("user"))
            if data_dict.get("id") == checked["refused"]:
                return {"success": False, "msg": "not this one"}
            return core_resource_show(context, data_dict)

        authz._AuthFunctions.keys()  # built, so the entry below stays
        monkeypatch.setitem(authz._AuthFunctions._functions,
                            "resource_show", resource_show)
        return checked

    def test_a_resource_the_user_may_not_read_is_not_granted(
            self, app, session_bridge, refuse_resource):
        user = factories.User()
        dataset = factories.Dataset()
        seen = factories.Resource(package_id=dataset["id"],
                                  url="http://example.org/seen.csv")
        hidden = factories.Resource(package_id=dataset["id"],
                                    url="http://example.org/hidden.csv")
        refuse_resource["refused"] = hidden["id"]
        _call(app, "jupyternotebook_session_create", _token(user),
              id=dataset["id"])
        sent = session_bridge.calls("POST", "/api/sessions")[0]["json"]
        assert [r["id"] for r in sent["resources"]] == [seen["id"]]
        assert set(refuse_resource["users"]) == {user["name"]}

    def test_a_notebook_the_user_may_not_read_is_refused(
            self, app, session_bridge, refuse_resource):
        user = factories.User()
        dataset = factories.Dataset()
        notebook = factories.Resource(package_id=dataset["id"],
                                      url="http://example.org/a.ipynb")
        refuse_resource["refused"] = notebook["id"]
        body = _call(app, "jupyternotebook_session_create", _token(user),
                     status=403, id=dataset["id"], resource_id=notebook["id"])
        assert "not allowed to open this notebook" in body["error"]["message"]
        assert not session_bridge.calls("POST", "/api/sessions")


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestSessionList:
    def test_a_user_lists_only_their_own_sessions(self, app,
                                                  session_bridge):
        user = factories.User()
        mine = session_bridge.add_session(user["id"])
        session_bridge.add_session("someone-else")
        result = _call(app, "jupyternotebook_session_list",
                       _token(user))["result"]
        assert [s["id"] for s in result] == [mine["id"]]

    def test_filtering_by_dataset_name(self, app, session_bridge):
        user = factories.User()
        dataset = factories.Dataset()
        wanted = session_bridge.add_session(user["id"], dataset["id"],
                                            dataset["name"])
        session_bridge.add_session(user["id"], "other-dataset-id")
        result = _call(app, "jupyternotebook_session_list", _token(user),
                       dataset_id=dataset["name"])["result"]
        assert [s["id"] for s in result] == [wanted["id"]]

    def test_all_is_for_sysadmins(self, app, session_bridge):
        session_bridge.add_session("u1")
        session_bridge.add_session("u2")
        _call(app, "jupyternotebook_session_list",
              _token(factories.User()), status=403, all=True)
        result = _call(app, "jupyternotebook_session_list",
                       _token(factories.Sysadmin()), all=True)["result"]
        assert len(result) == 2

    def test_anonymous_cannot_list(self, app, session_bridge):
        _call(app, "jupyternotebook_session_list", status=403)


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestSessionDelete:
    def test_a_user_deletes_their_own_session(self, app, session_bridge):
        user = factories.User()
        mine = session_bridge.add_session(user["id"])
        _call(app, "jupyternotebook_session_delete", _token(user),
              id=mine["id"])
        assert mine["id"] not in session_bridge.sessions

    def test_a_user_cannot_delete_another_users_session(self, app,
                                                        session_bridge):
        theirs = session_bridge.add_session("someone-else")
        _call(app, "jupyternotebook_session_delete",
              _token(factories.User()), status=403, id=theirs["id"])
        assert theirs["id"] in session_bridge.sessions

    def test_a_sysadmin_deletes_any_session(self, app, session_bridge):
        theirs = session_bridge.add_session("someone-else")
        _call(app, "jupyternotebook_session_delete",
              _token(factories.Sysadmin()), id=theirs["id"])
        assert theirs["id"] not in session_bridge.sessions

    def test_an_unknown_session_is_404(self, app, session_bridge):
        _call(app, "jupyternotebook_session_delete",
              _token(factories.Sysadmin()), status=404, id="nope")


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestCapacityShow:
    def test_anyone_reads_the_bridges_capacity(self, app, session_bridge):
        session_bridge.capacity["guests"] = {"active": 1, "max": 2}
        result = _call(app, "jupyternotebook_capacity_show")["result"]
        assert result["guests"] == {"active": 1, "max": 2}
        assert set(result) == {"guests", "users", "sessions", "pool"}

    def test_hub_down_is_a_json_error_not_a_500(self, app, bridge_down):
        body = _call(app, "jupyternotebook_capacity_show", status=409)
        assert body["error"]["code"] == ["hub_unavailable"]
