"""Settings: ckan.ini, the environment and the admin page, in that order of
increasing precedence, over the declared defaults."""
from __future__ import annotations

import pytest

import ckan.plugins as plugins
import ckan.plugins.toolkit as tk
from ckan.exceptions import CkanConfigurationException
from ckan.tests import factories, helpers

TIMEOUT = "ckanext.jupyternotebook.timeout"
GUESTS = "ckanext.jupyternotebook.max_guests"


def _reload_plugin_config():
    """What CKAN does at start-up: update_config, then app_globals.reset."""
    from ckan.lib import app_globals
    plugins.get_plugin("jupyternotebook").update_config(tk.config)
    app_globals._CONFIG_CACHE.clear()
    app_globals.reset()


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_default_applies_when_nothing_is_set():
    from ckanext.jupyternotebook import settings
    _reload_plugin_config()  # forget values an earlier test saved
    assert settings.get("timeout") == 1200
    assert settings.get("max_sessions_per_user") == 3
    assert settings.get("guest_access") is True
    assert settings.get("memory_limit") == "1G"


@pytest.mark.ckan_config(TIMEOUT, "90")
@pytest.mark.usefixtures("with_plugins")
def test_ckan_ini_value_overrides_default():
    from ckanext.jupyternotebook import settings
    assert settings.get("timeout") == 90


@pytest.mark.ckan_config(TIMEOUT, "90")
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_environment_overrides_ckan_ini(monkeypatch):
    from ckanext.jupyternotebook import settings
    monkeypatch.setenv("CKAN_JUPYTERHUB_TIMEOUT", "60")
    _reload_plugin_config()
    assert settings.get("timeout") == 60


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_every_setting_reads_its_environment_variable(monkeypatch):
    from ckanext.jupyternotebook import settings
    values = {
        "CKAN_JUPYTERNOTEBOOK_URL": ("hub_url", "http://10.0.0.1:8000"),
        "CKAN_JUPYTERHUB_BASE_URL": ("hub_base_url", "/hub-base/"),
        "CKAN_API_JUPYTERHUB": ("api_url", "http://10.0.0.1:6000"),
        "CKAN_JUPYTERHUB_API_TOKEN": ("api_token", "from-env"),
        "CKAN_JUPYTERHUB_TIMEOUT": ("timeout", 61),
        "CKAN_JUPYTERHUB_IDLE_TIMEOUT": ("idle_timeout", 62),
        "CKAN_JUPYTERHUB_USER": ("max_guests", 2),
        "CKAN_JUPYTERHUB_MAX_SESSIONS": ("max_sessions", 63),
        "CKAN_JUPYTERHUB_SESSIONS_PER_USER": ("max_sessions_per_user", 4),
        "CKAN_JUPYTERHUB_GUEST_ACCESS": ("guest_access", False),
        "CKAN_JUPYTERHUB_GUEST_RATE": ("guest_rate_limit", 9),
        "CKAN_JUPYTERHUB_PERCENTAGE_CPU": ("cpu_percent", 150),
        "CKAN_JUPYTERHUB_MEMORY_LIMIT": ("memory_limit", "2G"),
        "CKAN_JUPYTERHUB_SPAWNER": ("spawner", "docker"),
        "CKAN_JUPYTERHUB_POOL_SIZE": ("pool_size", 5),
        "CKAN_NETWORK": ("network", "backend"),
        "CKAN_STORAGE_NOTEBOOK": ("storage_path", "/srv/nb"),
        "CKAN_JUPYTERHUB_MAX_RESOURCE_SIZE": ("max_resource_size", "3G"),
        "CKAN_JUPYTERHUB_DOWNLOAD_TIMEOUT": ("download_timeout", 64),
        "CKAN_JUPYTERHUB_FETCH_ALLOWLIST": ("fetch_allowlist",
                                            ["a.example", "b.example"]),
        "CKAN_JUPYTERHUB_GUESTS_PER_ADDRESS": ("max_guests_per_address", 12),
        "CKAN_JUPYTERHUB_DISK_LIMIT": ("disk_limit", "5G"),
        "CKAN_JUPYTERHUB_SESSION_EGRESS": ("session_egress", "none"),
        "CKAN_JUPYTERHUB_TRUSTED_PROXIES": ("trusted_proxies",
                                            ["127.0.0.1", "10.0.0.0/8"]),
    }
    for env, (_, expected) in values.items():
        text = " ".join(expected) if isinstance(expected, list) \
            else str(expected).lower() if isinstance(expected, bool) \
            else str(expected)
        monkeypatch.setenv(env, text)
    _reload_plugin_config()
    assert {short: settings.get(short) for short, _ in values.values()} \
        == {short: expected for short, expected in values.values()}


@pytest.mark.ckan_config(GUESTS, "10")
@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_admin_saved_value_overrides_environment(monkeypatch):
    from ckanext.jupyternotebook import settings
    monkeypatch.setenv("CKAN_JUPYTERHUB_USER", "2")
    _reload_plugin_config()
    assert settings.get("max_guests") == 2

    sysadmin = factories.Sysadmin()
    helpers.call_action("config_option_update",
                        context={"user": sysadmin["name"]}, **{GUESTS: "7"})
    assert settings.get("max_guests") == 7

    # and it survives a restart, which re-applies the environment first
    _reload_plugin_config()
    assert settings.get("max_guests") == 7


@pytest.mark.usefixtures("with_plugins", "clean_db")
def test_false_from_environment_stays_false_after_app_globals_reset(
        monkeypatch):
    from ckanext.jupyternotebook import settings
    monkeypatch.setenv("CKAN_JUPYTERHUB_GUEST_ACCESS", "false")
    monkeypatch.setenv("CKAN_JUPYTERHUB_POOL_SIZE", "0")
    _reload_plugin_config()
    assert settings.get("guest_access") is False
    assert settings.get("pool_size") == 0


@pytest.mark.usefixtures("with_plugins")
def test_runtime_editable_settings_are_declared_editable():
    from ckan.common import config_declaration
    from ckan.config.declaration import Key
    from ckan.config.declaration.option import Flag
    from ckanext.jupyternotebook import settings
    editable = {
        short for short in settings.SETTINGS
        if config_declaration[Key.from_string(settings.key(short))]
        .has_flag(Flag.editable)}
    assert editable == set(settings.RUNTIME_EDITABLE) == {
        "timeout", "idle_timeout", "max_guests", "max_sessions",
        "max_sessions_per_user", "guest_access", "guest_rate_limit",
        "cpu_percent", "memory_limit", "pool_size", "max_guests_per_address",
        "disk_limit", "session_egress", "max_extended_age", "guest_extensions",
        "persistent_workspaces", "workspace_quota", "workspace_retention_days"}


def _configure(**overrides):
    from ckanext.jupyternotebook.plugin import JupyterNotebookPlugin
    config = tk.config.copy()
    config.update(overrides)
    JupyterNotebookPlugin().configure(config)


def test_configure_refuses_a_missing_token():
    with pytest.raises(CkanConfigurationException, match="api_token"):
        _configure(**{"ckanext.jupyternotebook.api_token": ""})


@pytest.mark.parametrize("key, value", [
    ("ckanext.jupyternotebook.api_url", "127.0.0.1:6000"),
    ("ckanext.jupyternotebook.api_url", "ftp://127.0.0.1:6000"),
    ("ckanext.jupyternotebook.hub_url", "http://"),
    ("ckanext.jupyternotebook.hub_url", "http://127.0.0.1:port"),
])
def test_configure_refuses_a_malformed_url(key, value):
    with pytest.raises(CkanConfigurationException, match=key):
        _configure(**{key: value})


def test_configure_refuses_a_non_numeric_limit():
    with pytest.raises(CkanConfigurationException, match="max_guests"):
        _configure(**{GUESTS: "many"})


def test_configure_accepts_the_test_configuration():
    _configure()


@pytest.mark.parametrize("short", ["memory_limit", "max_resource_size"])
def test_configure_refuses_a_malformed_size(short):
    key = f"ckanext.jupyternotebook.{short}"
    with pytest.raises(CkanConfigurationException, match=key):
        _configure(**{key: "lots"})
