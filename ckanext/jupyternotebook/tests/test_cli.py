"""``ckan jupyter ...`` (issue 5), against the bridge stand-in.

The same commands against the real bridge are in test_admin_bridge.py.
"""
from __future__ import annotations

import json

import pytest

from ckan.cli.cli import ckan
from ckan.tests import factories, helpers

from .test_admin import stub  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("with_plugins", "clean_db")


def _run(cli, stub, args):
    # The CLI loads CKAN's config afresh from test.ini, so point it at the
    # stand-in through the environment (which wins over ckan.ini).
    return cli.invoke(ckan, args, env={"CKAN_API_JUPYTERHUB": stub.url})


def test_status_prints_health_capacity_and_settings_state(cli, stub):
    stub.capacity = {"guests": {"active": 1, "max": 4},
                     "users": {"active": 0},
                     "sessions": {"active": 1, "max": 9},
                     "pool": {"ready": 0, "size": 0}}
    result = _run(cli, stub, ["jupyter", "status"])
    assert result.exit_code == 0, result.output
    assert "bridge: ok" in result.output
    assert "guests: 1/4" in result.output
    assert "sessions: 1/9" in result.output
    assert "in force on the bridge" in result.output


def test_status_json_is_machine_readable(cli, stub):
    result = _run(cli, stub, ["jupyter", "status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert data["health"]["status"] == "ok"
    assert data["capacity"]["guests"]["max"] == 100


def test_status_exits_1_when_the_bridge_is_down(cli, stub):
    stub.stop()
    result = _run(cli, stub, ["jupyter", "status"])
    assert result.exit_code == 1
    assert "DOWN" in result.output


def test_sessions_lists_every_live_session(cli, stub):
    stub.add_session("u1", "d1", "trees", id="s-a",
                     started_at="2024-01-01T00:00:00Z",
                     expires_at="2999-01-01T00:00:00Z")
    stub.add_session("g1", "d2", "birds", "guest", id="s-b",
                     hub_user="guest-abc", started_at="2024-01-01T00:00:00Z",
                     expires_at="2999-01-01T00:00:00Z")
    result = _run(cli, stub, ["jupyter", "sessions"])
    assert result.exit_code == 0, result.output
    assert "s-a" in result.output and "trees" in result.output
    assert "s-b" in result.output and "guest-abc" in result.output


def test_sessions_says_so_when_there_are_none(cli, stub):
    result = _run(cli, stub, ["jupyter", "sessions"])
    assert result.exit_code == 0
    assert "no live sessions" in result.output


def test_stop_ends_the_session_on_the_bridge(cli, stub):
    stub.add_session("u", id="s-c")
    result = _run(cli, stub, ["jupyter", "stop", "s-c"])
    assert result.exit_code == 0, result.output
    assert stub.deleted == ["s-c"]


def test_stop_of_an_unknown_session_exits_1(cli, stub):
    result = _run(cli, stub, ["jupyter", "stop", "nope"])
    assert result.exit_code == 1
    assert "no session nope" in result.output


def test_push_settings_sends_ckans_values(cli, stub):
    sysadmin = factories.Sysadmin()
    stub.stop()
    helpers.call_action("jupyternotebook_settings_update",
                        context={"user": sysadmin["name"]}, max_guests=7)
    stub.start()
    result = _run(cli, stub, ["jupyter", "push-settings"])
    assert result.exit_code == 0, result.output
    assert stub.puts[-1]["max_guests"] == 7
    assert "max_guests = 7" in result.output


def test_push_settings_exits_1_when_the_bridge_is_down(cli, stub):
    stub.stop()
    result = _run(cli, stub, ["jupyter", "push-settings"])
    assert result.exit_code == 1
    assert "could not push settings" in result.output
