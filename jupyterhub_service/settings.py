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


# short name → (environment variable, default, parser)
TABLE: dict[str, tuple[str, str, type | None]] = {
    "hub_url": ("CKAN_JUPYTERNOTEBOOK_URL", "http://127.0.0.1:8000", str),
    "hub_base_url": ("CKAN_JUPYTERHUB_BASE_URL", "/", str),
    "api_url": ("CKAN_API_JUPYTERHUB", "http://127.0.0.1:6000", str),
    "api_token": ("CKAN_JUPYTERHUB_API_TOKEN", "", str),
    "timeout": ("CKAN_JUPYTERHUB_TIMEOUT", "1200", int),
    "idle_timeout": ("CKAN_JUPYTERHUB_IDLE_TIMEOUT", "0", int),
    "max_guests": ("CKAN_JUPYTERHUB_USER", "100", int),
    "max_sessions": ("CKAN_JUPYTERHUB_MAX_SESSIONS", "200", int),
    "max_sessions_per_user": ("CKAN_JUPYTERHUB_SESSIONS_PER_USER", "3", int),
    "guest_access": ("CKAN_JUPYTERHUB_GUEST_ACCESS", "true", parse_bool),
    "guest_rate_limit": ("CKAN_JUPYTERHUB_GUEST_RATE", "3", int),
    "cpu_percent": ("CKAN_JUPYTERHUB_PERCENTAGE_CPU", "50", int),
    "memory_limit": ("CKAN_JUPYTERHUB_MEMORY_LIMIT", "1G", str),
    "spawner": ("CKAN_JUPYTERHUB_SPAWNER", "local", str),
    "pool_size": ("CKAN_JUPYTERHUB_POOL_SIZE", "0", int),
    "network": ("CKAN_NETWORK", "", str),
    "storage_path": ("CKAN_STORAGE_NOTEBOOK", "", str),
    "max_resource_size": ("CKAN_JUPYTERHUB_MAX_RESOURCE_SIZE", "2G", str),
    "download_timeout": ("CKAN_JUPYTERHUB_DOWNLOAD_TIMEOUT", "600", int),
    "fetch_allowlist": ("CKAN_JUPYTERHUB_FETCH_ALLOWLIST", "", str),
}

RUNTIME_KEYS = (
    "timeout",
    "idle_timeout",
    "max_guests",
    "max_sessions",
    "max_sessions_per_user",
    "guest_access",
    "guest_rate_limit",
    "cpu_percent",
    "memory_limit",
    "pool_size",
)


def validate_runtime(key: str, value) -> object:
    """Parse and check one runtime-editable value; raises ValueError."""
    if key not in RUNTIME_KEYS:
        raise ValueError(f"{key} is not a runtime setting")
    parser = TABLE[key][2]
    try:
        parsed = parser(value) if parser is not str else str(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{key}: {e}") from None
    if key == "memory_limit":
        if parse_bytes(parsed) < 64 * 1024**2:
            raise ValueError("memory_limit: at least 64M")
    elif key == "cpu_percent":
        if not 1 <= parsed <= 100 * (os.cpu_count() or 1) * 4:
            raise ValueError("cpu_percent: between 1 and 400 per core")
    elif key == "timeout":
        if parsed < 10:
            raise ValueError("timeout: at least 10 seconds")
    elif isinstance(parsed, int) and not isinstance(parsed, bool) and parsed < 0:
        raise ValueError(f"{key}: must not be negative")
    return parsed


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
    guest_access: bool
    guest_rate_limit: int
    cpu_percent: int
    memory_limit: str
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
    def storage_root(self) -> Path:
        return Path(self.storage_path) if self.storage_path else self.state_dir / "storage"

    @property
    def allowlist(self) -> list[str]:
        return [h.strip().lower() for h in self.fetch_allowlist.split(",") if h.strip()]

    def runtime_defaults(self) -> dict:
        return {k: getattr(self, k) for k in RUNTIME_KEYS}


def load(environ=None) -> Settings:
    env = os.environ if environ is None else environ
    values = {}
    for short, (var, default, parser) in TABLE.items():
        raw = env.get(var, default)
        values[short] = parser(raw) if parser is not str else raw
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
    for key in RUNTIME_KEYS:
        validate_runtime(key, values[key])
    parse_bytes(values["max_resource_size"])
    if values["spawner"] not in ("local", "docker", "swarm"):
        raise ValueError("CKAN_JUPYTERHUB_SPAWNER must be local, docker or swarm")
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
