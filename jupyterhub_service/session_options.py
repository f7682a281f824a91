"""Reading a container session's ``user_options`` (docker_spawner.py): its
limits, egress mode, host directories and environment.

Pure functions of the options and the spawner's configured defaults; a value
that cannot describe a session is a ``SessionOptionsError``.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import egress
from .settings import parse_bytes

MIN_DISK = 64 * 1024**2


class SessionOptionsError(ValueError):
    """user_options that cannot describe a session."""


def session_limits(options: dict, default_cpu_percent: int, default_memory_limit: str,
                   default_pids_limit: int) -> tuple[float, str, int]:
    """(cpus, memory limit, pids) for this session."""
    limits = options.get("limits") or {}
    try:
        cpus = int(limits.get("cpu_percent") or default_cpu_percent) / 100
        memory = str(limits.get("memory_limit") or default_memory_limit)
        pids = int(limits.get("pids") or default_pids_limit)
    except (TypeError, ValueError) as e:
        raise SessionOptionsError(f"bad limits {limits!r}: {e}") from None
    if cpus <= 0 or pids < 16:
        raise SessionOptionsError(f"bad limits {limits!r}")
    return cpus, memory, pids


def session_disk_limit(options: dict, default: str) -> int:
    raw = (options.get("limits") or {}).get("disk_limit") or default
    try:
        size = parse_bytes(raw)
    except (TypeError, ValueError) as e:
        raise SessionOptionsError(f"bad disk_limit {raw!r}: {e}") from None
    if size < MIN_DISK:
        raise SessionOptionsError(f"disk_limit {raw!r} is below {MIN_DISK // 1024**2}M")
    return size


def session_egress_mode(options: dict, default: str) -> str:
    mode = (options.get("limits") or {}).get("session_egress") or default
    if mode not in egress.MODES:
        raise SessionOptionsError(f"session_egress must be one of {egress.MODES}: {mode!r}")
    return mode


def host_dir(options: dict, key: str, storage_root: str) -> str | None:
    """The absolute, normalised host path under ``key``, or None when there
    is none; it must lie inside ``storage_root`` when that is set."""
    value = options.get(key)
    if not value:
        return None
    path = Path(str(value))
    if not path.is_absolute():
        raise SessionOptionsError(f"{key} must be an absolute path: {value!r}")
    path = Path(os.path.normpath(path))
    if storage_root:
        root = Path(os.path.normpath(storage_root))
        if root != path and root not in path.parents:
            raise SessionOptionsError(f"{key} is outside {root}: {value!r}")
    return str(path)


def session_environment(options: dict, session_id: str, cpus: float) -> dict:
    """What the session's server and kernels learn about their session."""
    return {
        "CKAN_SESSION_ID": session_id,
        "CKAN_DATASET_ID": str(options.get("dataset_id", "")),
        "CKAN_DATASET_NAME": str(options.get("dataset_name", "")),
        "CKAN_SESSION_EXPIRES_AT": str(options.get("expires_at", "")),
        # what jupyter-resource-usage and friends read
        "CPU_LIMIT": str(cpus),
    }
