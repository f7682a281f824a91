from __future__ import annotations

import datetime as dt
from typing import Any

import ckan.plugins.toolkit as tk

from . import config as settings
from . import hub_client


def jupyternotebook_launch_mode(pkg: dict[str, Any]) -> str:
    """What the dataset page offers: ``"launch"`` (the button) or ``"login"``
    (a prompt to log in, for guests who may not launch this dataset)."""
    if tk.current_user.is_authenticated:
        return "launch"
    if settings.get("guest_access") and not pkg.get("private"):
        return "launch"
    return "login"


def jupyternotebook_guest_access() -> bool:
    return settings.get("guest_access")


def jupyternotebook_seconds_left(expires_at: str | None) -> int | None:
    when = hub_client.parse_time(expires_at)
    if when is None:
        return None
    now = dt.datetime.now(dt.timezone.utc)
    return max(0, int((when - now).total_seconds()))


def jupyternotebook_duration(seconds: int | None) -> str:
    """A short, translated "3 min" / "1 h 5 min" / "40 s"."""
    if seconds is None:
        return ""
    if seconds < 60:
        return tk._("%(n)d s") % {"n": seconds}
    minutes = (seconds + 59) // 60
    if minutes < 60:
        return tk._("%(n)d min") % {"n": minutes}
    return tk._("%(h)d h %(m)d min") % {"h": minutes // 60,
                                        "m": minutes % 60}


# --------------------------------------------------------------------------
# admin settings


def jupyternotebook_settings_pending() -> bool:
    """Saved runtime settings have not reached the bridge yet."""
    from . import runtime_settings
    try:
        return runtime_settings.is_pending()
    except Exception:  # a template helper must not break the admin page
        return False


def jupyternotebook_setting(short: str) -> Any:
    """A runtime setting in force now, typed (for the admin config form:
    CKAN's config holds "" there for a deployed 0 or false)."""
    try:
        return settings.get(short)
    except (KeyError, TypeError, ValueError):
        return ""
