"""Every setting of the sidecar, read once from the environment.

This is the only module of ``jupyterhub_service`` that reads ``os.environ``.
The names follow the settings table of the design: the short name is the key
in the bridge's ``/api/settings``; the environment variable is the seed's.

Runtime-editable settings (``RUNTIME_KEYS``) start from these values; the
bridge then keeps the values CKAN pushes in its database.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_bytes(value: str | int) -> int:
    """``"1G"`` → 1073741824; plain integers are bytes."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(value), re.I)
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 512M or 2G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_choice(*choices: str):
    def parse(value: str) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"one of {', '.join(choices)}, not {value!r}")
        return text
    parse.choices = choices
    return parse


@dataclass(frozen=True)
class Option:
    """One setting: where it comes from, its default, its type and range.

    ``low``/``high`` bound integers, and sizes in bytes; CKAN's
    ``config_declaration.yaml`` declares the same ranges, and a test
    (ckanext/jupyternotebook/tests/test_settings_agree.py) compares the two.
    """

    env: str
    default: str
    parse: Callable[[str], object] = str
    low: int | None = None
    high: int | None = None
    runtime: bool = False


_RUNTIME = {"runtime": True}
_WEEK = 7 * 24 * 3600
_MB = 1024**2

# short name → its option; the short name is the key in /api/settings
TABLE: dict[str, Option] = {
    "hub_url": Option("CKAN_JUPYTERNOTEBOOK_URL", "http://127.0.0.1:8000"),
    "hub_base_url": Option("CKAN_JUPYTERHUB_BASE_URL", "/"),
    "api_url": Option("CKAN_API_JUPYTERHUB", "http://127.0.0.1:6000"),
    "api_token": Option("CKAN_JUPYTERHUB_API_TOKEN", ""),
    "timeout": Option("CKAN_JUPYTERHUB_TIMEOUT", "1200", int, 10, _WEEK, **_RUNTIME),
    "idle_timeout": Option("CKAN_JUPYTERHUB_IDLE_TIMEOUT", "0", int, 0, _WEEK, **_RUNTIME),
    "max_guests": Option("CKAN_JUPYTERHUB_USER", "100", int, 0, 100000, **_RUNTIME),
    "max_sessions": Option("CKAN_JUPYTERHUB_MAX_SESSIONS", "200", int, 0, 100000, **_RUNTIME),
    "max_sessions_per_user": Option(
        "CKAN_JUPYTERHUB_SESSIONS_PER_USER", "3", int, 0, 1000, **_RUNTIME
    ),
    # Guest sessions one client address may hold at once. 30: a school class
    # behind one NAT address all get a session, while one address can never
    # take more than 30 of the default 100 guest slots.
    "max_guests_per_address": Option(
        "CKAN_JUPYTERHUB_GUESTS_PER_ADDRESS", "30", int, 1, 100000, **_RUNTIME
    ),
    "guest_access": Option("CKAN_JUPYTERHUB_GUEST_ACCESS", "true", parse_bool, **_RUNTIME),
    "guest_rate_limit": Option("CKAN_JUPYTERHUB_GUEST_RATE", "3", int, 0, 100000, **_RUNTIME),
    # percent of one core; the container spawners clamp it to the engine's
    # CPUs at spawn, so one range holds on every host
    "cpu_percent": Option("CKAN_JUPYTERHUB_PERCENTAGE_CPU", "50", int, 1, 6400, **_RUNTIME),
    "memory_limit": Option("CKAN_JUPYTERHUB_MEMORY_LIMIT", "1G", str, 64 * _MB, **_RUNTIME),
    "disk_limit": Option("CKAN_JUPYTERHUB_DISK_LIMIT", "2G", str, 64 * _MB, **_RUNTIME),
    "session_egress": Option(
        "CKAN_JUPYTERHUB_SESSION_EGRESS", "public", parse_choice("public", "none"), **_RUNTIME
    ),
    # each Extend adds `timeout`, up to this age counted from the start; 0: off
    "max_extended_age": Option(
        "CKAN_JUPYTERHUB_MAX_EXTENDED_AGE", "14400", int, 0, _WEEK, **_RUNTIME
    ),
    "guest_extensions": Option(
        "CKAN_JUPYTERHUB_GUEST_EXTENSIONS", "false", parse_bool, **_RUNTIME
    ),
    "persistent_workspaces": Option(
        "CKAN_JUPYTERHUB_PERSISTENT_WORKSPACES", "false", parse_bool, **_RUNTIME
    ),
    "workspace_quota": Option(
        "CKAN_JUPYTERHUB_WORKSPACE_QUOTA", "1G", str, 64 * _MB, **_RUNTIME
    ),
    "workspace_retention_days": Option(
        "CKAN_JUPYTERHUB_WORKSPACE_RETENTION_DAYS", "30", int, 1, 3650, **_RUNTIME
    ),
    "spawner": Option("CKAN_JUPYTERHUB_SPAWNER", "local", parse_choice("local", "docker", "swarm")),
    "pool_size": Option("CKAN_JUPYTERHUB_POOL_SIZE", "0", int, 0, 10000, **_RUNTIME),
    "network": Option("CKAN_NETWORK", ""),
    "storage_path": Option("CKAN_STORAGE_NOTEBOOK", ""),
    "max_resource_size": Option("CKAN_JUPYTERHUB_MAX_RESOURCE_SIZE", "2G", str, 1),
    "download_timeout": Option("CKAN_JUPYTERHUB_DOWNLOAD_TIMEOUT", "600", int, 1, 86400),
    "fetch_allowlist": Option("CKAN_JUPYTERHUB_FETCH_ALLOWLIST", ""),
}

#: settings CKAN's admin page edits and pushes with PUT /api/settings
RUNTIME_KEYS = tuple(short for short, option in TABLE.items() if option.runtime)

#: settings whose text is a size (``512M``, ``2G``); their range is in bytes
SIZE_KEYS = ("memory_limit", "disk_limit", "workspace_quota", "max_resource_size")


def _check(key: str, raw) -> object:
    """Parse one value and check it against its range; raises ValueError."""
    option = TABLE[key]
    try:
        parsed = option.parse(raw) if option.parse is not str else str(raw).strip()
        measured = parse_bytes(parsed) if key in SIZE_KEYS else parsed
    except (TypeError, ValueError) as e:
        raise ValueError(f"{key}: {e}") from None
    if isinstance(measured, int) and not isinstance(measured, bool):
        low, high = option.low, option.high
        if (low is not None and measured < low) or (high is not None and measured > high):
            if key in SIZE_KEYS:
                raise ValueError(f"{key}: at least {low // _MB}M")
            if high is None:
                raise ValueError(f"{key}: at least {low}")
            raise ValueError(f"{key}: from {low} to {high}")
    return parsed


def validate_runtime(key: str, value) -> object:
    """Parse and check one runtime-editable value; raises ValueError."""
    if key not in RUNTIME_KEYS:
        raise ValueError(f"{key} is not a runtime setting")
    return _check(key, value)


@dataclass(frozen=True)
class Settings:
    hub_url: str
    hub_base_url: str
    api_url: str
    api_token: str
    timeout: int
    idle_timeout: int
    max_guests: int
    max_sessions: int
    max_sessions_per_user: int
    max_guests_per_address: int
    guest_access: bool
    guest_rate_limit: int
    cpu_percent: int
    memory_limit: str
    disk_limit: str
    session_egress: str
    max_extended_age: int
    guest_extensions: bool
    persistent_workspaces: bool
    workspace_quota: str
    workspace_retention_days: int
    spawner: str
    pool_size: int
    network: str
    storage_path: str
    max_resource_size: str
    download_timeout: int
    fetch_allowlist: str
    # internal: where the hub and bridge keep their state
    state_dir: Path = field(default=Path("."))
    bridge_db_url: str = ""
    session_user: str = "jupyter-session"
    reaper_interval: float = 5.0
    hub_bind_url: str = ""
    singleuser_image: str = "ckanext-jupyternotebook/singleuser:latest"
    sessions_network: str = "jupyter-sessions"
    cache_size: str = "20G"
    hub_port: int = 8081
    # docker/swarm: the host name sessions use to reach a hub that runs in a
    # container on the sessions network (compose: the service's hostname);
    # empty when the hub runs on the host
    hub_connect_host: str = ""
    proxy_api_port: int = 8001

    @property
    def bridge_port(self) -> int:
        return urlparse(self.api_url).port or 80

    @property
    def bridge_host(self) -> str:
        host = urlparse(self.api_url).hostname or "127.0.0.1"
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            # a service name (e.g. "jupyterhub" in compose): listen on all
            # interfaces of this container
            return "127.0.0.1" if host == "localhost" else "0.0.0.0"

    @property
    def visitor_port(self) -> int:
        """The port of the visitor's routes (user_routes.py): the bridge's
        next one, on loopback. Only the hub's proxy calls it, and the hub
        starts the proxy and the bridge side by side."""
        return self.bridge_port + 1

    @property
    def visitor_url(self) -> str:
        """The URL the hub's proxy forwards /services/bridge/ to. Loopback,
        never the bridge's host name: in a hub container that name is the
        container's address on the sessions network, so the proxy would
        call from there, and the bridge refuses callers from that network."""
        return f"http://127.0.0.1:{self.visitor_port}"

    @property
    def storage_root(self) -> Path:
        return Path(self.storage_path) if self.storage_path else self.state_dir / "storage"

    @property
    def allowlist(self) -> list[str]:
        # documented as space-separated; commas are accepted too
        return [h.lower() for h in re.split(r"[\s,]+", self.fetch_allowlist) if h]

    def runtime_defaults(self) -> dict:
        return {k: getattr(self, k) for k in RUNTIME_KEYS}


def load(environ=None) -> Settings:
    env = os.environ if environ is None else environ
    values = {}
    for short, option in TABLE.items():
        raw = env.get(option.env, option.default)
        try:
            values[short] = _check(short, raw)
        except ValueError as e:
            raise ValueError(f"{option.env}: {e}") from None
    state_dir = Path(env.get("JUPYTERNOTEBOOK_STATE_DIR", ".")).resolve()
    values.update(
        state_dir=state_dir,
        bridge_db_url=env.get(
            "JUPYTERNOTEBOOK_BRIDGE_DB", f"sqlite:///{state_dir / 'bridge.sqlite'}"
        ),
        session_user=env.get("JUPYTERNOTEBOOK_SESSION_USER", "jupyter-session"),
        reaper_interval=float(env.get("JUPYTERNOTEBOOK_REAPER_INTERVAL", "5")),
        # where the hub's proxy listens, when it differs from the public URL
        hub_bind_url=env.get("JUPYTERNOTEBOOK_HUB_BIND_URL", ""),
        singleuser_image=env.get(
            "JUPYTERNOTEBOOK_SINGLEUSER_IMAGE", "ckanext-jupyternotebook/singleuser:latest"
        ),
        sessions_network=env.get("JUPYTERNOTEBOOK_SESSIONS_NETWORK", "jupyter-sessions"),
        cache_size=env.get("JUPYTERNOTEBOOK_CACHE_SIZE", "20G"),
        hub_port=int(env.get("JUPYTERNOTEBOOK_HUB_PORT", "8081")),
        hub_connect_host=env.get("JUPYTERNOTEBOOK_HUB_CONNECT_HOST", ""),
        proxy_api_port=int(env.get("JUPYTERNOTEBOOK_PROXY_API_PORT", "8001")),
    )
    return Settings(**values)


def hub_api_env(environ=None) -> tuple[str, str]:
    """The hub API URL and this service's token, as JupyterHub hands them to
    a managed service."""
    env = os.environ if environ is None else environ
    return (
        env.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
        env.get("JUPYTERHUB_API_TOKEN", ""),
    )


SERVICE_ENV_PREFIXES = ("CKAN_", "JUPYTERNOTEBOOK_")


def service_environment(environ=None) -> dict:
    """What the hub hands on to the bridge: a managed service starts with a
    bare environment, so our settings travel explicitly."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k.startswith(SERVICE_ENV_PREFIXES)}
