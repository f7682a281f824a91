"""CKAN and the bridge declare each shared setting once each: CKAN in
``config_declaration.yaml`` (its validators carry the ranges), the bridge in
``jupyterhub_service/settings.py``'s TABLE. These tests compare the two, so a
range accepted on one side is never refused on the other (issue 10 item 17:
cpu_percent went to 6400 in CKAN and 800 on the bridge)."""
from __future__ import annotations

import pytest

from jupyterhub_service import settings as bridge


def _ckan():
    from ckanext.jupyternotebook import settings
    return settings


def _declared(short):
    from ckan.common import config_declaration
    from ckan.config.declaration import Key
    return config_declaration[Key.from_string(_ckan().key(short))]


SHARED = [short for short in bridge.TABLE if short in
          ("timeout", "idle_timeout", "max_guests", "max_sessions",
           "max_sessions_per_user", "max_guests_per_address", "guest_access",
           "guest_rate_limit", "cpu_percent", "memory_limit", "disk_limit",
           "session_egress", "spawner", "pool_size", "max_resource_size",
           "download_timeout", "hub_url", "hub_base_url", "api_url",
           "api_token", "network", "storage_path", "fetch_allowlist",
           "max_extended_age", "guest_extensions", "persistent_workspaces",
           "workspace_quota", "workspace_retention_days")]


def test_every_bridge_setting_is_declared_by_ckan():
    assert set(bridge.TABLE) == set(SHARED)
    assert set(bridge.TABLE) <= set(_ckan().SETTINGS)


@pytest.mark.usefixtures("with_plugins")
@pytest.mark.parametrize("short", SHARED)
def test_both_sides_read_the_same_environment_variable(short):
    assert _ckan().SETTINGS[short].env == bridge.TABLE[short].env


@pytest.mark.usefixtures("with_plugins")
def test_the_runtime_settings_are_the_same_on_both_sides():
    assert set(_ckan().RUNTIME_EDITABLE) == set(bridge.RUNTIME_KEYS)


@pytest.mark.usefixtures("with_plugins")
@pytest.mark.parametrize("short", SHARED)
def test_both_sides_have_the_same_default(short):
    ckan_default = _declared(short).default
    bridge_default = bridge.TABLE[short].default
    if isinstance(ckan_default, bool):
        ckan_default = str(ckan_default).lower()
    if isinstance(ckan_default, list):
        ckan_default = " ".join(ckan_default)
    assert ("" if ckan_default is None else str(ckan_default)) \
        == bridge_default


@pytest.mark.usefixtures("with_plugins")
@pytest.mark.parametrize("short", SHARED)
def test_both_sides_accept_the_same_range(short):
    option = bridge.TABLE[short]
    try:
        validators = _ckan().declared_validators(short)
    except KeyError:
        validators = []
    ranges = [v.range for v in validators if hasattr(v, "range")]
    minimums = [v.minimum for v in validators if hasattr(v, "minimum")]
    choices = [v.choices for v in validators if hasattr(v, "choices")]
    if option.parse is int:
        assert ranges == [(option.low, option.high)]
    elif short in bridge.SIZE_KEYS:
        assert minimums == [option.low]
    elif hasattr(option.parse, "choices"):
        assert choices == [option.parse.choices]
    elif option.parse is bridge.parse_bool:
        assert validators and validators[0].__name__ == "jupyternotebook_bool"
    else:
        assert validators == [] and option.low is None and option.high is None


@pytest.mark.usefixtures("with_plugins")
@pytest.mark.parametrize("short, good, bad", [
    ("cpu_percent", "6400", "6401"),
    ("cpu_percent", "1", "0"),
    ("timeout", "10", "9"),
    ("memory_limit", "64M", "63M"),
    ("disk_limit", "64M", "10M"),
    ("session_egress", "none", "some"),
    ("max_guests_per_address", "1", "0"),
])
def test_a_value_at_the_edge_gets_the_same_answer_on_both_sides(short, good, bad):
    import ckan.plugins.toolkit as tk
    validators = _ckan().declared_validators(short)

    def ckan_accepts(value):
        try:
            for validator in validators:
                value = validator(value, {})
        except tk.Invalid:
            return False
        return True

    def bridge_accepts(value):
        try:
            bridge.validate_runtime(short, value)
        except ValueError:
            return False
        return True

    assert (ckan_accepts(good), ckan_accepts(bad)) == (True, False)
    assert (bridge_accepts(good), bridge_accepts(bad)) == (True, False)
