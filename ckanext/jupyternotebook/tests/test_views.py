"""The blueprint: launch, fetch, the sessions dashboard and stop."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

import ckan.plugins.toolkit as tk
from ckan.tests import factories

CSV = b"city,population\nLisbon,545923\nSeoul,9411000\n"


def _csrf(app, url, **kwargs):
    """The CSRF token from a page's form, and the cookies that go with it."""
    page = app.get(url, **kwargs)
    match = re.search(r'name="_csrf_token" value="([^"]+)"', page.body)
    assert match, "no CSRF token on " + url
    return match.group(1)


def _launch(app, dataset, extra_environ=None, headers=None):
    url = tk.url_for("dataset.read", id=dataset["name"])
    token = _csrf(app, url, extra_environ=extra_environ, headers=headers)
    return app.post(
        tk.url_for("jupyternotebook.launch", id=dataset["name"]),
        data={"_csrf_token": token}, extra_environ=extra_environ,
        headers=headers, follow_redirects=False)


def _auth(user):
    token = factories.APIToken(user=user["id"])["token"]
    return {"Authorization": token}


@pytest.fixture
def create_with_upload(create_with_upload):
    """CKAN's fixture, as a sysadmin: 2.12's file storage records an owner."""
    sysadmin = factories.Sysadmin()

    def factory(data, filename, **kwargs):
        return create_with_upload(data, filename,
                                  context={"user": sysadmin["name"]},
                                  **kwargs)
    return factory


# --------------------------------------------------------------------------
# fetch


@pytest.fixture
def upload(create_with_upload):
    dataset = factories.Dataset(private=False)
    resource = create_with_upload(CSV, "cities.csv",
                                  package_id=dataset["id"])
    return dataset, resource


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestFetch:
    def test_a_valid_grant_streams_the_uploaded_bytes(self, app, upload):
        from ckanext.jupyternotebook import grants
        _, resource = upload
        response = app.get(tk.url_for(
            "jupyternotebook.fetch", resource_id=resource["id"],
            grant=grants.sign([resource["id"]])))
        assert response.status_code == 200
        assert response.data == CSV

    def test_a_private_datasets_upload_streams_with_a_grant(
            self, app, create_with_upload):
        from ckanext.jupyternotebook import grants
        org = factories.Organization()
        dataset = factories.Dataset(private=True, owner_org=org["id"])
        resource = create_with_upload(CSV, "secret.csv",
                                      package_id=dataset["id"])
        response = app.get(tk.url_for(
            "jupyternotebook.fetch", resource_id=resource["id"],
            grant=grants.sign([resource["id"]])))
        assert response.status_code == 200
        assert response.data == CSV

    def test_a_missing_grant_is_refused(self, app, upload):
        _, resource = upload
        response = app.get(tk.url_for("jupyternotebook.fetch",
                                      resource_id=resource["id"]))
        assert response.status_code == 403

    def test_an_expired_grant_is_refused(self, app, upload):
        from ckanext.jupyternotebook import grants
        _, resource = upload
        grant = grants.sign([resource["id"]], ttl=-1)
        response = app.get(tk.url_for(
            "jupyternotebook.fetch", resource_id=resource["id"], grant=grant))
        assert response.status_code == 403

    def test_a_forged_grant_is_refused(self, app, upload):
        from ckanext.jupyternotebook import grants
        _, resource = upload
        payload, _sig = grants.sign(["another"]).split(".")
        good_payload = grants.sign([resource["id"]]).split(".")[0]
        response = app.get(tk.url_for(
            "jupyternotebook.fetch", resource_id=resource["id"],
            grant=f"{good_payload}.{_sig}"))
        assert response.status_code == 403

    def test_a_grant_for_another_resource_is_refused(self, app, upload,
                                                     create_with_upload):
        from ckanext.jupyternotebook import grants
        dataset, resource = upload
        other = create_with_upload(b"x", "other.csv",
                                   package_id=dataset["id"])
        response = app.get(tk.url_for(
            "jupyternotebook.fetch", resource_id=resource["id"],
            grant=grants.sign([other["id"]])))
        assert response.status_code == 403


# --------------------------------------------------------------------------
# the button


@pytest.mark.usefixtures("non_clean_db", "with_plugins")
class TestButton:
    def test_a_guest_sees_the_button_on_a_public_dataset(self, app):
        dataset = factories.Dataset()
        page = app.get(tk.url_for("dataset.read", id=dataset["name"]))
        assert tk.url_for("jupyternotebook.launch", id=dataset["name"]) \
            in page.body
        assert "Open in Jupyter" in page.body

    @pytest.mark.ckan_config("ckanext.jupyternotebook.guest_access", "false")
    def test_a_guest_sees_a_login_prompt_when_guest_access_is_off(self, app):
        dataset = factories.Dataset()
        page = app.get(tk.url_for("dataset.read", id=dataset["name"]))
        assert tk.url_for("jupyternotebook.launch", id=dataset["name"]) \
            not in page.body
        assert "Log in to open in Jupyter" in page.body

    @pytest.mark.ckan_config("ckanext.jupyternotebook.guest_access", "false")
    def test_a_logged_in_user_sees_the_button_when_guest_access_is_off(
            self, app):
        user = factories.User()
        dataset = factories.Dataset()
        page = app.get(tk.url_for("dataset.read", id=dataset["name"]),
                       headers=_auth(user))
        assert tk.url_for("jupyternotebook.launch", id=dataset["name"]) \
            in page.body

    def test_the_button_is_a_post_form_with_a_csrf_token(self, app):
        dataset = factories.Dataset()
        page = app.get(tk.url_for("dataset.read", id=dataset["name"])).body
        action = tk.url_for("jupyternotebook.launch", id=dataset["name"])
        form = page[page.index(f'action="{action}"') - 200:]
        form = form[:form.index("</form>")]
        assert 'method="post"' in form
        assert 'name="_csrf_token"' in form


# --------------------------------------------------------------------------
# launch


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestLaunch:
    def test_get_redirects_to_the_dataset_page(self, app):
        dataset = factories.Dataset()
        response = app.get(
            tk.url_for("jupyternotebook.launch", id=dataset["name"]),
            follow_redirects=False)
        assert response.status_code in (302, 303)
        assert response.headers["Location"].endswith(
            tk.url_for("dataset.read", id=dataset["name"]))

    def test_a_guest_launch_answers_303_to_the_launch_url(self, app, session_bridge):
        dataset = factories.Dataset()
        response = _launch(app, dataset)
        assert response.status_code == 303
        (session,) = session_bridge.sessions.values()
        assert response.headers["Location"] == session["launch_url"]

    def test_a_guest_launch_sends_a_random_guest_id_from_the_session(
            self, app, session_bridge):
        dataset = factories.Dataset()
        _launch(app, dataset)
        _launch(app, dataset)
        first, second = [c["json"] for c in session_bridge.calls("POST",
                                                         "/api/sessions")]
        assert first["user"]["kind"] == "guest"
        assert len(first["user"]["id"]) >= 16
        # the same browser is the same guest
        assert second["user"]["id"] == first["user"]["id"]

    def test_two_browsers_are_two_guests(self, app, session_bridge, make_app):
        dataset = factories.Dataset()
        _launch(app, dataset)
        _launch(make_app(), dataset)
        first, second = [c["json"] for c in session_bridge.calls("POST",
                                                         "/api/sessions")]
        assert first["user"]["id"] != second["user"]["id"]

    def test_the_session_request_describes_dataset_and_resources(
            self, app, session_bridge, create_with_upload):
        dataset = factories.Dataset(title="Cities")
        upload = create_with_upload(CSV, "cities.csv",
                                    package_id=dataset["id"])
        link = factories.Resource(package_id=dataset["id"],
                                  url="https://example.org/data.json",
                                  format="JSON")
        _launch(app, dataset)
        (call,) = session_bridge.calls("POST", "/api/sessions")
        body = call["json"]
        assert call["headers"]["Authorization"] == "Bearer test-bridge-token"
        assert body["dataset"]["id"] == dataset["id"]
        assert body["dataset"]["name"] == dataset["name"]
        assert body["dataset"]["title"] == "Cities"
        assert body["dataset"]["url"].endswith("/dataset/" + dataset["name"])
        assert "notebook_resource_id" not in body
        by_id = {r["id"]: r for r in body["resources"]}
        assert by_id[upload["id"]]["source"] == "ckan"
        assert by_id[upload["id"]]["size"] == len(CSV)
        assert "/jupyter/fetch/" + upload["id"] + "?grant=" \
            in by_id[upload["id"]]["fetch_url"]
        assert by_id[link["id"]]["source"] == "external"
        assert by_id[link["id"]]["fetch_url"] == \
            "https://example.org/data.json"
        for key in ("name", "format", "hash", "last_modified",
                    "metadata_modified", "url_type"):
            assert key in by_id[upload["id"]]

    def test_the_fetch_url_in_the_session_request_works(
            self, app, session_bridge, create_with_upload):
        dataset = factories.Dataset()
        upload = create_with_upload(CSV, "cities.csv",
                                    package_id=dataset["id"])
        _launch(app, dataset)
        (resource,) = session_bridge.calls("POST", "/api/sessions")[0]["json"][
            "resources"]
        parts = urlsplit(resource["fetch_url"])
        response = app.get(parts.path, query_string=parse_qs(parts.query))
        assert response.status_code == 200
        assert response.data == CSV

    def test_a_logged_in_user_launches_as_a_user(self, app, session_bridge):
        user = factories.User()
        dataset = factories.Dataset()
        _launch(app, dataset, headers=_auth(user))
        body = session_bridge.calls("POST", "/api/sessions")[0]["json"]
        assert body["user"] == {"kind": "user", "id": user["id"],
                                "name": user["name"]}

    def test_anonymous_cannot_launch_a_private_dataset(self, app, session_bridge):
        org = factories.Organization()
        dataset = factories.Dataset(private=True, owner_org=org["id"])
        token = _csrf(app, "/dataset/")
        response = app.post(
            tk.url_for("jupyternotebook.launch", id=dataset["id"]),
            data={"_csrf_token": token}, follow_redirects=False)
        assert response.status_code in (403, 404)
        assert not session_bridge.calls("POST", "/api/sessions")

    def test_a_member_can_launch_a_private_dataset(self, app, session_bridge):
        user = factories.User()
        org = factories.Organization(
            users=[{"name": user["name"], "capacity": "member"}])
        dataset = factories.Dataset(private=True, owner_org=org["id"])
        response = _launch(app, dataset, headers=_auth(user))
        assert response.status_code == 303
        assert len(session_bridge.calls("POST", "/api/sessions")) == 1

    def test_a_non_member_cannot_launch_a_private_dataset(self, app, session_bridge):
        user = factories.User()
        org = factories.Organization()
        dataset = factories.Dataset(private=True, owner_org=org["id"])
        token = _csrf(app, "/dataset/", headers=_auth(user))
        response = app.post(
            tk.url_for("jupyternotebook.launch", id=dataset["id"]),
            data={"_csrf_token": token}, headers=_auth(user),
            follow_redirects=False)
        assert response.status_code in (403, 404)
        assert not session_bridge.calls("POST", "/api/sessions")

    @pytest.mark.ckan_config("ckanext.jupyternotebook.guest_access", "false")
    def test_a_guest_gets_a_login_prompt_when_guest_access_is_off(
            self, app, session_bridge):
        dataset = factories.Dataset()
        token = _csrf(app, "/dataset/")
        response = app.post(
            tk.url_for("jupyternotebook.launch", id=dataset["name"]),
            data={"_csrf_token": token}, follow_redirects=False)
        assert response.status_code == 403
        assert "Log in" in response.body
        assert not session_bridge.calls("POST", "/api/sessions")

    def test_an_unknown_dataset_is_404(self, app, session_bridge):
        token = _csrf(app, "/dataset/")
        response = app.post(
            tk.url_for("jupyternotebook.launch", id="no-such-dataset"),
            data={"_csrf_token": token}, follow_redirects=False)
        assert response.status_code == 404

    def test_a_post_without_csrf_token_is_refused(self, app, session_bridge):
        dataset = factories.Dataset()
        response = app.post(
            tk.url_for("jupyternotebook.launch", id=dataset["name"]),
            follow_redirects=False)
        assert response.status_code in (400, 403)
        assert not session_bridge.calls("POST", "/api/sessions")

    def test_full_guest_capacity_gives_a_friendly_429_page(self, app, session_bridge):
        session_bridge.respond("POST", "/api/sessions", 429, {
            "error": "guest_capacity",
            "message": "All 2 guest sessions are in use",
            "retry_after": 300, "max": 2, "active": 2,
        }, {"Retry-After": "300"})
        dataset = factories.Dataset()
        response = _launch(app, dataset)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "300"
        assert "All 2 guest sessions this portal offers are in use" \
            in response.body
        assert "5 min" in response.body
        assert "Logged-in users are not subject to the guest limit" \
            in response.body

    @pytest.mark.parametrize("code, text", [
        ("capacity", "All notebook sessions are in use"),
        ("user_limit", "You have reached your session limit"),
        ("rate_limited", "Too many launches"),
    ])
    def test_every_limit_gives_the_429_page(self, app, session_bridge, code, text):
        session_bridge.respond("POST", "/api/sessions", 429, {
            "error": code, "message": "no", "retry_after": 30})
        response = _launch(app, factories.Dataset())
        assert response.status_code == 429
        assert text in response.body

    def test_hub_down_gives_a_friendly_503_page(self, app, bridge_down):
        response = _launch(app, factories.Dataset())
        assert response.status_code == 503
        assert "Notebooks are unavailable right now" in response.body

    def test_bridge_503_gives_the_503_page(self, app, session_bridge):
        session_bridge.respond("POST", "/api/sessions", 503, {
            "error": "hub_unavailable", "message": "hub down"})
        response = _launch(app, factories.Dataset())
        assert response.status_code == 503
        assert "Notebooks are unavailable right now" in response.body

    def test_a_bridge_404_on_launch_is_not_dataset_not_found(self, app, session_bridge):
        # issue 10 item 18: hub_client.NotFound is an ObjectNotFound, and the
        # launch view turned any bridge 404 into "Dataset not found"
        session_bridge.respond("POST", "/api/sessions", 404, {
            "error": "not_found", "message": "No such session."})
        response = _launch(app, factories.Dataset())
        assert response.status_code == 502
        assert "Dataset not found" not in response.body
        assert "Notebooks are unavailable right now" in response.body

    def test_a_notebook_launch_names_the_notebook(self, app, session_bridge,
                                                  create_with_upload):
        dataset = factories.Dataset()
        notebook = create_with_upload(b"{}", "explore.ipynb",
                                      package_id=dataset["id"])
        token = _csrf(app, tk.url_for("dataset.read", id=dataset["name"]))
        response = app.post(
            tk.url_for("jupyternotebook.launch_notebook", id=dataset["name"],
                       resource_id=notebook["id"]),
            data={"_csrf_token": token}, follow_redirects=False)
        assert response.status_code == 303
        body = session_bridge.calls("POST", "/api/sessions")[0]["json"]
        assert body["notebook_resource_id"] == notebook["id"]


# --------------------------------------------------------------------------
# the sessions dashboard and stop


@pytest.mark.usefixtures("non_clean_db", "with_plugins")
class TestDashboard:
    def test_lists_only_the_users_own_sessions(self, app, session_bridge):
        user = factories.User()
        mine = session_bridge.add_session(user["id"], dataset_name="mine")
        session_bridge.add_session("someone-else", dataset_name="theirs")
        page = app.get(tk.url_for("jupyternotebook.dashboard"),
                       headers=_auth(user))
        assert page.status_code == 200
        assert mine["id"] in page.body
        assert "theirs" not in page.body
        assert tk.url_for("jupyternotebook.stop", session_id=mine["id"]) \
            in page.body

    def test_a_sysadmin_sees_every_session(self, app, session_bridge):
        sysadmin = factories.Sysadmin()
        one = session_bridge.add_session("u1", dataset_name="one")
        two = session_bridge.add_session("u2", dataset_name="two")
        page = app.get(tk.url_for("jupyternotebook.dashboard"),
                       headers=_auth(sysadmin))
        assert one["id"] in page.body and two["id"] in page.body

    def test_anonymous_is_sent_to_log_in(self, app, session_bridge):
        response = app.get(tk.url_for("jupyternotebook.dashboard"),
                           follow_redirects=False)
        assert response.status_code == 302
        assert "/user/login" in response.headers["Location"]

    def test_a_user_stops_their_own_session(self, app, session_bridge):
        user = factories.User()
        mine = session_bridge.add_session(user["id"])
        token = _csrf(app, tk.url_for("jupyternotebook.dashboard"),
                      headers=_auth(user))
        response = app.post(
            tk.url_for("jupyternotebook.stop", session_id=mine["id"]),
            data={"_csrf_token": token}, headers=_auth(user),
            follow_redirects=False)
        assert response.status_code == 302
        assert mine["id"] not in session_bridge.sessions

    def test_a_user_cannot_stop_another_users_session(self, app, session_bridge):
        user = factories.User()
        session_bridge.add_session(user["id"])
        theirs = session_bridge.add_session("someone-else")
        token = _csrf(app, tk.url_for("jupyternotebook.dashboard"),
                      headers=_auth(user))
        response = app.post(
            tk.url_for("jupyternotebook.stop", session_id=theirs["id"]),
            data={"_csrf_token": token}, headers=_auth(user),
            follow_redirects=False)
        assert response.status_code == 403
        assert theirs["id"] in session_bridge.sessions

    def test_a_sysadmin_stops_anyones_session(self, app, session_bridge):
        sysadmin = factories.Sysadmin()
        theirs = session_bridge.add_session("someone-else")
        token = _csrf(app, tk.url_for("jupyternotebook.dashboard"),
                      headers=_auth(sysadmin))
        response = app.post(
            tk.url_for("jupyternotebook.stop", session_id=theirs["id"]),
            data={"_csrf_token": token}, headers=_auth(sysadmin),
            follow_redirects=False)
        assert response.status_code == 302
        assert theirs["id"] not in session_bridge.sessions


@pytest.mark.usefixtures("clean_db", "with_plugins")
class TestLaunchesInFlight:
    """Issue 10 item 9: a launch holds a worker thread until the server is
    ready, so one CKAN process bounds the launches it waits for."""

    @pytest.mark.ckan_config(
        "ckanext.jupyternotebook.max_launches_in_flight", "2")
    def test_a_launch_past_the_bound_gets_the_busy_page_at_once(
            self, app, session_bridge):
        import concurrent.futures
        import threading
        import time

        slow = threading.Event()
        session_bridge.launches_wait_for = slow
        dataset = factories.Dataset()
        users = [factories.User() for _ in range(4)]

        def launch(user):
            # each thread its own client: the flask test client is not shared
            client = app.test_client()
            return client.post(
                tk.url_for("jupyternotebook.launch", id=dataset["name"]),
                headers=_auth(user), follow_redirects=False)

        pool = concurrent.futures.ThreadPoolExecutor(3)
        try:
            waiting = [pool.submit(launch, u) for u in users[:2]]
            deadline = time.monotonic() + 30
            while len(session_bridge.calls("POST", "/api/sessions")) < 2:
                assert time.monotonic() < deadline, "the launches never left"
                time.sleep(0.05)
            busy = pool.submit(launch, users[2]).result(timeout=20)
        finally:
            slow.set()
        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "15"
        assert "Many notebooks are starting right now" in busy.body
        assert [f.result(timeout=30).status_code for f in waiting] \
            == [303, 303]
        assert len(session_bridge.calls("POST", "/api/sessions")) == 2
        # the slots are free again once those launches ended
        assert launch(users[3]).status_code == 303
        pool.shutdown()
