"""Admin control (issue 5): runtime settings, their push to the bridge, the
admin sessions page, and who may use them.

The bridge here is ``bridge_stub`` (held to the bridge's openapi.json): a
narrow test of CKAN's push and resync. The
same behaviour against the real bridge is in test_admin_bridge.py.
"""
from __future__ import annotations

import socket

import pytest

import ckan.model as model
from ckan.tests import factories, helpers

from .bridge_stub import BridgeStub

P = "ckanext.jupyternotebook."



@pytest.fixture
def stub(ckan_config):
    bridge = BridgeStub(token=ckan_config[P + "api_token"]).start()
    ckan_config[P + "api_url"] = bridge.url
    from ckanext.jupyternotebook.settings_sync import sync
    sync.last_check = sync.last_attempt = 0.0
    yield bridge
    bridge.stop()
    assert bridge.violations == [], "CKAN sent what the bridge refuses"


@pytest.fixture
def sysadmin_headers():
    return {"Authorization": factories.SysadminWithToken()["token"]}


@pytest.fixture
def user_headers():
    return {"Authorization": factories.UserWithToken()["token"]}


def _config_form(app, headers, **changes) -> dict:
    """The admin config form as the page renders it, with ``changes``."""
    from ckan.lib.helpers import url_for
    from ckanext.jupyternotebook.settings import RUNTIME_EDITABLE, get

    form = {"ckan.site_title": "CKAN", "save": ""}
    for short in RUNTIME_EDITABLE:
        value = get(short)
        form[P + short] = str(value).lower() if isinstance(value, bool) \
            else str(value)
    form.update({P + k: v for k, v in changes.items()})
    return form


pytestmark = pytest.mark.usefixtures("with_plugins", "clean_db")


# --------------------------------------------------------------------------
# who may


@pytest.mark.parametrize("url", ["/ckan-admin/jupyter", "/ckan-admin/config"])
def test_non_sysadmin_gets_403_on_the_admin_pages(app, user_headers, url):
    app.get(url, headers=user_headers, status=403)
    app.get(url, status=403)


def test_non_sysadmin_gets_403_when_stopping_a_session_from_the_admin_page(
        app, user_headers, stub):
    stub.add_session("u1", id="s1")
    app.post("/ckan-admin/jupyter/session/s1/stop", headers=user_headers,
             status=403)
    assert stub.deleted == []


@pytest.mark.parametrize("action", ["jupyternotebook_settings_show",
                                    "jupyternotebook_settings_update"])
def test_settings_actions_are_refused_to_non_sysadmins(app, action, stub):
    user = factories.User()
    with pytest.raises(helpers.logic.NotAuthorized):
        helpers.call_action(action, context={"user": user["name"],
                                             "ignore_auth": False},
                            max_guests=1)


@pytest.mark.parametrize("action", ["jupyternotebook_settings_show",
                                    "jupyternotebook_settings_update"])
def test_settings_actions_over_the_api_answer_403_to_non_sysadmins(
        app, action, user_headers, stub):
    response = app.post(f"/api/3/action/{action}", json={"max_guests": 1},
                        headers=user_headers, status=403)
    assert response.json["success"] is False


# --------------------------------------------------------------------------
# validation


@pytest.mark.parametrize("field,value", [
    ("timeout", "5"),
    ("timeout", "soon"),
    ("max_guests", "-1"),
    ("max_guests", "1.5"),
    ("cpu_percent", "0"),
    ("memory_limit", "lots"),
    ("memory_limit", "1M"),
    ("guest_access", "maybe"),
    ("pool_size", "-3"),
])
def test_settings_update_rejects_invalid_values(field, value, stub):
    sysadmin = factories.Sysadmin()
    with pytest.raises(helpers.logic.ValidationError) as err:
        helpers.call_action("jupyternotebook_settings_update",
                            context={"user": sysadmin["name"]},
                            **{field: value})
    assert field in err.value.error_dict
    assert stub.puts == []


def test_settings_update_rejects_names_that_are_not_runtime_settings(stub):
    sysadmin = factories.Sysadmin()
    with pytest.raises(helpers.logic.ValidationError) as err:
        helpers.call_action("jupyternotebook_settings_update",
                            context={"user": sysadmin["name"]},
                            api_token="stolen")
    assert "api_token" in err.value.error_dict


def test_admin_config_form_with_an_invalid_value_shows_the_error_and_saves_nothing(
        app, sysadmin_headers, stub):
    response = app.post("/ckan-admin/config", headers=sysadmin_headers,
                        data=_config_form(app, sysadmin_headers,
                                          timeout="soon", max_guests="7"))
    assert response.status_code == 200
    assert "Enter a whole number" in response.body
    from ckanext.jupyternotebook.settings import get
    assert get("max_guests") == 100
    assert stub.puts == []


# --------------------------------------------------------------------------
# saving and pushing


def test_admin_config_page_lists_every_runtime_setting(app, sysadmin_headers):
    from ckanext.jupyternotebook.settings import RUNTIME_EDITABLE
    body = app.get("/ckan-admin/config", headers=sysadmin_headers).body
    for short in RUNTIME_EDITABLE:
        assert f'name="{P}{short}"' in body


def test_saving_the_admin_config_form_stores_and_pushes_the_settings(
        app, sysadmin_headers, stub):
    app.post("/ckan-admin/config", headers=sysadmin_headers,
             data=_config_form(app, sysadmin_headers, max_guests="1",
                               timeout="600", guest_access="false",
                               memory_limit="512m"))
    assert stub.puts, "nothing was pushed"
    pushed = stub.puts[-1]
    assert pushed["max_guests"] == 1
    assert pushed["timeout"] == 600
    assert pushed["guest_access"] is False
    assert pushed["memory_limit"] == "512M"
    assert model.get_system_info(P + "max_guests") == "1"
    sysadmin = factories.Sysadmin()
    shown = helpers.call_action("jupyternotebook_settings_show",
                                context={"user": sysadmin["name"]})
    assert shown["settings"]["max_guests"] == 1
    assert shown["in_sync"] is True
    assert shown["pending"] is False


def test_settings_update_action_stores_and_pushes(stub):
    sysadmin = factories.Sysadmin()
    result = helpers.call_action("jupyternotebook_settings_update",
                                 context={"user": sysadmin["name"]},
                                 max_guests=2, idle_timeout=300)
    assert result["pushed"] is True
    assert result["settings"]["max_guests"] == 2
    assert result["bridge"]["max_guests"] == 2
    assert stub.puts[-1]["idle_timeout"] == 300


def test_saving_while_the_bridge_is_down_tells_the_admin(
        app, sysadmin_headers, stub):
    stub.stop()
    response = app.post("/ckan-admin/config", headers=sysadmin_headers,
                        data=_config_form(app, sysadmin_headers,
                                          max_guests="4"))
    assert response.status_code == 200
    assert "could not be reached" in response.body
    assert model.get_system_info(P + "max_guests") == "4"
    from ckanext.jupyternotebook.settings_sync import sync
    assert sync.is_pending()


def test_settings_saved_while_the_bridge_was_down_are_pushed_when_it_is_back(
        app, sysadmin_headers, stub):
    from ckanext.jupyternotebook.settings_sync import sync
    stub.stop()
    sysadmin = factories.Sysadmin()
    result = helpers.call_action("jupyternotebook_settings_update",
                                 context={"user": sysadmin["name"]},
                                 max_guests=5)
    assert result["pushed"] is False
    assert sync.is_pending()

    stub.start()
    # any admin page view (and any launch) resyncs; here the sessions page
    app.get("/ckan-admin/jupyter", headers=sysadmin_headers)
    assert stub.settings["max_guests"] == 5
    assert not sync.is_pending()


def test_settings_the_bridge_refused_are_not_pushed_again_by_each_launch(
        app, sysadmin_headers, stub):
    # issue 10 item 17: a refused push used to stay "pending" for ever, and
    # every launch pushed the same refused values again
    from ckanext.jupyternotebook.settings_sync import sync
    stub.refuse_puts = "cpu_percent: from 1 to 400"
    sysadmin = factories.Sysadmin()
    result = helpers.call_action("jupyternotebook_settings_update",
                                 context={"user": sysadmin["name"]},
                                 cpu_percent=600)
    assert result["pushed"] is False
    assert len(stub.puts) == 1
    assert not sync.is_pending()
    for _ in range(3):  # what three launches do before they start
        sync.last_check = 0.0
        assert sync.resync() is False
    assert len(stub.puts) == 1
    page = app.get("/ckan-admin/jupyter", headers=sysadmin_headers)
    assert "The notebook service refused the settings saved in CKAN: " \
        "cpu_percent: from 1 to 400." in page.body
    assert len(stub.puts) == 1

    # new values are pushed again, and clear the refusal once accepted
    stub.refuse_puts = None
    helpers.call_action("jupyternotebook_settings_update",
                        context={"user": sysadmin["name"]}, cpu_percent=300)
    assert stub.settings["cpu_percent"] == 300
    assert sync.rejection() is None


def test_resync_pushes_again_when_the_bridge_lost_its_settings(stub):
    from ckanext.jupyternotebook.settings_sync import sync
    sysadmin = factories.Sysadmin()
    helpers.call_action("jupyternotebook_settings_update",
                        context={"user": sysadmin["name"]}, max_guests=6)
    # the bridge restarted with an empty database: its own defaults, no
    # updated_at
    stub.settings["max_guests"] = 100
    stub.updated_at = None
    puts_before = len(stub.puts)
    assert sync.resync(force=True) is True
    assert len(stub.puts) == puts_before + 1
    assert stub.settings["max_guests"] == 6


def test_resync_pushes_again_when_the_bridge_reports_older_settings(stub):
    from ckanext.jupyternotebook.settings_sync import sync
    sysadmin = factories.Sysadmin()
    helpers.call_action("jupyternotebook_settings_update",
                        context={"user": sysadmin["name"]}, max_guests=6)
    # the bridge's database was restored from a backup older than the push
    stub.settings["max_guests"] = 3
    stub.updated_at = "2023-06-01T00:00:00Z"
    assert sync.resync(force=True) is True
    assert stub.settings["max_guests"] == 6


def test_resync_leaves_settings_the_bridge_got_later_alone(stub):
    from ckanext.jupyternotebook.settings_sync import sync
    sysadmin = factories.Sysadmin()
    helpers.call_action("jupyternotebook_settings_update",
                        context={"user": sysadmin["name"]}, max_guests=6)
    # an operator PUT newer values straight to the bridge
    stub.settings["max_guests"] = 50
    stub.updated_at = "2999-01-01T00:00:00Z"
    puts_before = len(stub.puts)
    assert sync.resync(force=True) is True
    assert len(stub.puts) == puts_before
    assert stub.settings["max_guests"] == 50


def test_resync_pushes_nothing_when_the_bridge_already_agrees(stub):
    from ckanext.jupyternotebook.settings_sync import sync
    assert sync.resync(force=True) is True
    assert stub.puts == []


def test_ckan_admin_reset_returns_our_settings_to_the_deployed_values(
        app, sysadmin_headers, stub):
    from ckanext.jupyternotebook.settings import get
    app.post("/ckan-admin/config", headers=sysadmin_headers,
             data=_config_form(app, sysadmin_headers, max_guests="1"))
    assert get("max_guests") == 1

    app.post("/ckan-admin/reset_config", headers=sysadmin_headers)
    assert get("max_guests") == 100  # the declared default; test.ini sets none
    assert model.get_system_info(P + "max_guests") is None
    assert stub.puts[-1]["max_guests"] == 100


def test_settings_update_with_reset_returns_to_the_deployed_values(stub):
    from ckanext.jupyternotebook.settings import get
    sysadmin = factories.Sysadmin()
    helpers.call_action("jupyternotebook_settings_update",
                        context={"user": sysadmin["name"]}, timeout=60)
    assert get("timeout") == 60
    result = helpers.call_action("jupyternotebook_settings_update",
                                 context={"user": sysadmin["name"]},
                                 reset=True)
    assert result["settings"]["timeout"] == 1200
    assert result["saved"] == []
    assert stub.puts[-1]["timeout"] == 1200


# --------------------------------------------------------------------------
# the admin sessions page


def test_admin_nav_has_a_jupyter_tab(app, sysadmin_headers, stub):
    body = app.get("/ckan-admin/", headers=sysadmin_headers).body
    assert 'href="/ckan-admin/jupyter"' in body


def test_admin_sessions_page_shows_health_capacity_and_sessions(
        app, sysadmin_headers, stub):
    stub.capacity = {"guests": {"active": 2, "max": 10},
                     "users": {"active": 1},
                     "sessions": {"active": 3, "max": 20},
                     "pool": {"ready": 1, "size": 2}}
    stub.add_session("u1", "ds1", "trees", id="sess-1",
                     server_name="d-12345678",
                     started_at="2024-01-01T00:00:00Z",
                     expires_at="2999-01-01T00:00:00Z")
    body = app.get("/ckan-admin/jupyter", headers=sysadmin_headers).body
    assert 'data-health="ok"' in body
    assert "2 / 10" in body and "3 / 20" in body and "1 / 2" in body
    assert 'data-session-id="sess-1"' in body
    assert "trees" in body and "ckan-u1" in body
    assert 'action="/ckan-admin/jupyter/session/sess-1/stop"' in body
    assert "_csrf_token" in body


def test_admin_sessions_page_says_when_the_bridge_is_down(
        app, sysadmin_headers, stub):
    stub.stop()
    response = app.get("/ckan-admin/jupyter", headers=sysadmin_headers)
    assert response.status_code == 200
    assert 'data-health="down"' in response.body


def test_stop_button_ends_the_session_on_the_bridge(app, sysadmin_headers,
                                                    stub):
    stub.add_session("someone-else", id="sess-2")
    app.post("/ckan-admin/jupyter/session/sess-2/stop",
             headers=sysadmin_headers)
    assert stub.deleted == ["sess-2"]


def test_session_rows_give_age_and_time_left():
    import datetime as dt
    from ckanext.jupyternotebook import admin
    now = dt.datetime(2024, 1, 1, 1, 0, 0, tzinfo=dt.timezone.utc)
    rows = admin.session_rows([{
        "id": "a", "started_at": "2024-01-01T00:50:00Z",
        "expires_at": "2024-01-01T01:10:30+00:00"}], now=now)
    assert rows[0]["age"] == "10 minutes"
    assert rows[0]["time_left"] == "10 minutes"


def test_admin_config_page_shows_zero_and_false_values_not_blanks(
        app, sysadmin_headers):
    import re
    body = app.get("/ckan-admin/config", headers=sysadmin_headers).body
    for short in ("idle_timeout", "pool_size"):
        field = re.search(rf'<input[^>]*name="{P}{short}"[^>]*>', body).group(0)
        assert 'value="0"' in field, field


def test_admin_config_form_submitted_unchanged_saves_and_pushes(
        app, sysadmin_headers, stub):
    """The form as rendered (zeros included) is valid as it stands."""
    import re
    body = app.get("/ckan-admin/config", headers=sysadmin_headers).body
    form = {"save": ""}
    for name, value in re.findall(
            rf'<input[^>]*name="({re.escape(P)}[a-z_]+)"[^>]*value="([^"]*)"',
            body):
        form[name] = value
    form[P + "guest_access"] = "true"
    response = app.post("/ckan-admin/config", headers=sysadmin_headers,
                        data=form)
    assert "error-block" not in response.body
    assert stub.puts and stub.puts[-1]["idle_timeout"] == 0
