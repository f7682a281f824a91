"""The plugin's settings: one place that knows their names, types and sources.

Precedence, highest first: a value saved on CKAN's admin config page, the
environment, ``ckan.ini``, the declared default.

How that order comes about: ``apply_environment`` runs in
``IConfigurer.update_config`` and writes environment values over the ini
values in CKAN's config. Afterwards CKAN's ``app_globals.reset()`` (at start-up,
on every request that notices a change, and on the admin page's reset) copies
admin-saved ``system_info`` values over the runtime-editable keys, falling back
to the config it saw first, which already holds the environment values.
"""
from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import ckan.plugins.toolkit as tk
from ckan.common import CKANConfig
from ckan.exceptions import CkanConfigurationException

PREFIX = "ckanext.jupyternotebook."


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    return int(str(value).strip())


def _as_str(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _as_list(value: Any) -> list[str]:
    return [item for item in tk.aslist(value, sep=None) if item] \
        if not isinstance(value, (list, tuple)) else [str(v) for v in value]


@dataclass(frozen=True)
class Setting:
    short: str
    env: str
    parse: Callable[[Any], Any]
    editable: bool = False

    @property
    def key(self) -> str:
        return PREFIX + self.short


_SETTINGS = [
    Setting("hub_url", "CKAN_JUPYTERNOTEBOOK_URL", _as_str),
    Setting("hub_base_url", "CKAN_JUPYTERHUB_BASE_URL", _as_str),
    Setting("api_url", "CKAN_API_JUPYTERHUB", _as_str),
    Setting("api_token", "CKAN_JUPYTERHUB_API_TOKEN", _as_str),
    Setting("timeout", "CKAN_JUPYTERHUB_TIMEOUT", _as_int, True),
    Setting("idle_timeout", "CKAN_JUPYTERHUB_IDLE_TIMEOUT", _as_int, True),
    Setting("max_guests", "CKAN_JUPYTERHUB_USER", _as_int, True),
    Setting("max_sessions", "CKAN_JUPYTERHUB_MAX_SESSIONS", _as_int, True),
    Setting("max_sessions_per_user", "CKAN_JUPYTERHUB_SESSIONS_PER_USER",
            _as_int, True),
    Setting("max_guests_per_address", "CKAN_JUPYTERHUB_GUESTS_PER_ADDRESS",
            _as_int, True),
    Setting("guest_access", "CKAN_JUPYTERHUB_GUEST_ACCESS", tk.asbool, True),
    Setting("guest_rate_limit", "CKAN_JUPYTERHUB_GUEST_RATE", _as_int, True),
    Setting("cpu_percent", "CKAN_JUPYTERHUB_PERCENTAGE_CPU", _as_int, True),
    Setting("memory_limit", "CKAN_JUPYTERHUB_MEMORY_LIMIT", _as_str, True),
    Setting("disk_limit", "CKAN_JUPYTERHUB_DISK_LIMIT", _as_str, True),
    Setting("session_egress", "CKAN_JUPYTERHUB_SESSION_EGRESS", _as_str, True),
    Setting("max_extended_age", "CKAN_JUPYTERHUB_MAX_EXTENDED_AGE", _as_int, True),
    Setting("guest_extensions", "CKAN_JUPYTERHUB_GUEST_EXTENSIONS", tk.asbool, True),
    Setting("persistent_workspaces", "CKAN_JUPYTERHUB_PERSISTENT_WORKSPACES",
            tk.asbool, True),
    Setting("workspace_quota", "CKAN_JUPYTERHUB_WORKSPACE_QUOTA", _as_str, True),
    Setting("workspace_retention_days", "CKAN_JUPYTERHUB_WORKSPACE_RETENTION_DAYS",
            _as_int, True),
    # CKAN-side only: the report workers (issue 14)
    Setting("max_report_runs", "CKAN_JUPYTERHUB_MAX_REPORT_RUNS", _as_int),
    Setting("spawner", "CKAN_JUPYTERHUB_SPAWNER", _as_str),
    Setting("pool_size", "CKAN_JUPYTERHUB_POOL_SIZE", _as_int, True),
    Setting("network", "CKAN_NETWORK", _as_str),
    Setting("storage_path", "CKAN_STORAGE_NOTEBOOK", _as_str),
    Setting("max_resource_size", "CKAN_JUPYTERHUB_MAX_RESOURCE_SIZE", _as_str),
    Setting("download_timeout", "CKAN_JUPYTERHUB_DOWNLOAD_TIMEOUT", _as_int),
    Setting("fetch_allowlist", "CKAN_JUPYTERHUB_FETCH_ALLOWLIST", _as_list),
    # CKAN-side only; not in the bridge's /api/settings
    Setting("trusted_proxies", "CKAN_JUPYTERHUB_TRUSTED_PROXIES", _as_list),
    Setting("grant_ttl", "", _as_int),
    Setting("request_timeout", "", _as_int),
    Setting("launch_timeout", "", _as_int),
    Setting("max_launches_in_flight", "", _as_int),
    Setting("fetch_base_url", "CKAN_JUPYTERHUB_FETCH_BASE_URL", _as_str),
]

SETTINGS: dict[str, Setting] = {s.short: s for s in _SETTINGS}
RUNTIME_EDITABLE: tuple[str, ...] = tuple(
    s.short for s in _SETTINGS if s.editable)

# The values deployed through ckan.ini and the environment, as seen by the
# last update_config, before any admin-saved value is applied.
_deployed: dict[str, Any] = {}


def key(short: str) -> str:
    return SETTINGS[short].key


def apply_environment(config: CKANConfig,
                      environ: Mapping[str, str] | None = None) -> None:
    """Write settings given in the environment over those from ckan.ini."""
    environ = os.environ if environ is None else environ
    for setting in _SETTINGS:
        if setting.env and environ.get(setting.env, "").strip():
            config[setting.key] = environ[setting.env].strip()
        if setting.editable:
            # app_globals.reset() replaces a falsy value (0, False) of an
            # editable key with "", which then fails validation; text such
            # as "0" or "false" survives it.
            config[setting.key] = _as_text(config.get(setting.key))
        _deployed[setting.short] = config.get(setting.key)


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return value


def deployed(short: str) -> Any:
    """The value from the environment, ckan.ini or the default."""
    return SETTINGS[short].parse(_deployed.get(short, tk.config.get(key(short))))


def get(short: str) -> Any:
    """The setting in force now, parsed to its type."""
    setting = SETTINGS[short]
    value = tk.config.get(setting.key)
    if value is None or value == "":
        value = _deployed.get(short, value)
    if value is None:
        value = ""
    return setting.parse(value)


def runtime_settings() -> dict[str, Any]:
    """The runtime-editable settings in force now, as the bridge names them."""
    return {short: get(short) for short in RUNTIME_EDITABLE}


def deployed_runtime_settings() -> dict[str, Any]:
    """The runtime-editable settings from the environment, ckan.ini or the
    defaults, whatever a sysadmin saved."""
    return {short: deployed(short) for short in RUNTIME_EDITABLE}


def config_schema() -> dict[str, list]:
    """Our runtime-editable keys for ``IConfigurer.update_config_schema``,
    with their declared validators. An emptied field on the admin form keeps
    the value in force."""
    ignore_empty = tk.get_validator("ignore_empty")
    return {key(short): [ignore_empty] + declared_validators(short)
            for short in RUNTIME_EDITABLE}


def _check_url(short: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CkanConfigurationException(
            f"{key(short)} must be an http(s) URL with a host name, "
            f"got {value!r} (environment variable {SETTINGS[short].env})")
    try:
        parts.port
    except ValueError as err:
        raise CkanConfigurationException(
            f"{key(short)} has an invalid port: {value!r}") from err


def check(config: CKANConfig) -> None:
    """Refuse to start with a configuration that cannot work."""
    def lookup(short: str) -> Any:
        value = config.get(key(short))
        return SETTINGS[short].parse("" if value is None else value)

    try:
        values = {short: lookup(short) for short in SETTINGS}
    except (ValueError, TypeError) as err:
        bad = next(s for s in _SETTINGS if not _parses(s, config))
        raise CkanConfigurationException(
            f"{bad.key} has an invalid value {config.get(bad.key)!r}"
            + (f" (environment variable {bad.env})" if bad.env else "")
        ) from err
    if not values["api_token"]:
        raise CkanConfigurationException(
            f"{key('api_token')} is not set. Set it in ckan.ini or in the "
            f"environment variable {SETTINGS['api_token'].env}; it must be "
            "the same token the JupyterHub bridge is configured with.")
    for short in ("hub_url", "api_url"):
        _check_url(short, values[short])
    for setting in _SETTINGS:
        _check_declared(setting, config.get(setting.key))
    for entry in values["trusted_proxies"]:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as err:
            raise CkanConfigurationException(
                f"{key('trusted_proxies')} must list IP addresses or CIDR "
                f"networks such as 10.0.0.0/8, got {entry!r} (environment "
                f"variable {SETTINGS['trusted_proxies'].env})") from err
    for setting in _SETTINGS:
        if setting.parse is _as_int and values[setting.short] < 0:
            raise CkanConfigurationException(
                f"{setting.key} must not be negative, "
                f"got {values[setting.short]}")


def declared_validators(short: str) -> list:
    """The plugin's validators ``config_declaration.yaml`` names for a
    setting, built from the file itself (so they hold before the plugin is
    loaded, as in ``configure``). CKAN's own ``convert_int`` and
    ``boolean_validator`` are left out: the admin form stores text.
    KeyError when it names none."""
    import ast

    from .logic import validators

    names = _declared_validator_names().get(key(short), "")
    built = []
    for token in names.split():
        name, _, args = token.partition("(")
        if not name.startswith("jupyternotebook_"):
            continue
        factory = getattr(validators, name)
        if args:
            parsed = ast.literal_eval(args[:-1] + ",")  # always a tuple
            built.append(factory(*parsed))
        else:
            built.append(factory)
    if not built:
        raise KeyError(short)
    return built


@lru_cache(maxsize=1)
def _declared_validator_names() -> dict[str, str]:
    import yaml
    declaration = yaml.safe_load(
        (Path(__file__).parent / "config_declaration.yaml").read_text())
    return {option["key"]: option.get("validators", "")
            for group in declaration["groups"] for option in group["options"]}


def _check_declared(setting: Setting, value: Any) -> None:
    if value is None or value == "":
        return
    try:
        validators = declared_validators(setting.short)
    except KeyError:
        return
    for validator in validators:
        try:
            value = validator(value, {})
        except tk.Invalid as err:
            raise CkanConfigurationException(
                f"{setting.key} has an invalid value {value!r}: {err.error}"
                + (f" (environment variable {setting.env})"
                   if setting.env else "")) from err


def _parses(setting: Setting, config: CKANConfig) -> bool:
    value = config.get(setting.key)
    try:
        setting.parse("" if value is None else value)
    except (ValueError, TypeError):
        return False
    return True
