from __future__ import annotations

import datetime as dt
from typing import Any

import ckan.plugins.toolkit as tk

from . import settings
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


def jupyternotebook_duration(seconds: int | float | None) -> str:
    """A duration in the page's language, as babel words it ("5 minutes",
    "1 hour", "40 seconds"); empty for None."""
    if seconds is None:
        return ""
    from babel.dates import format_timedelta
    from ckan.lib.i18n import get_lang
    try:
        locale = get_lang() or "en"
    except Exception:  # outside a request (the CLI)
        locale = "en"
    return format_timedelta(dt.timedelta(seconds=max(0, int(seconds))),
                            locale=locale)


def jupyternotebook_my_workspace() -> dict[str, Any]:
    """The logged-in user's workspace for the dashboard: ``{"enabled",
    "workspace" (or None), "error"}``; never raises (a helper must not break
    the page)."""
    found = {"enabled": bool(settings.get("persistent_workspaces")),
             "workspace": None, "error": False}
    if not tk.current_user.is_authenticated:
        return found
    try:
        result = tk.get_action("jupyternotebook_workspace_list")(
            {"user": tk.current_user.name}, {})
    except (tk.NotAuthorized, tk.ObjectNotFound):
        return found
    except hub_client.BridgeError:
        found["error"] = True
        return found
    found["workspace"] = (result["workspaces"] or [None])[0]
    return found


# --------------------------------------------------------------------------
# admin settings


def jupyternotebook_settings_pending() -> bool:
    """Saved runtime settings have not reached the bridge yet."""
    from .settings_sync import sync
    try:
        return sync.is_pending()
    except Exception:  # a template helper must not break the admin page
        return False


def jupyternotebook_setting(short: str) -> Any:
    """A runtime setting in force now, typed (for the admin config form:
    CKAN's config holds "" there for a deployed 0 or false)."""
    try:
        return settings.get(short)
    except (KeyError, TypeError, ValueError):
        return ""
