"""Runtime-editable settings: their validation, the push to the bridge, resync.

CKAN is the authority. A sysadmin saves values on ``/ckan-admin/config`` (or
through ``config_option_update`` / ``jupyternotebook_settings_update``);
CKAN stores them in ``system_info`` and a chained ``config_option_update``
pushes all runtime settings to the bridge with ``PUT /api/settings``.

Why a chained action and not IConfigurer: ``update_config_schema`` only
declares which keys are editable and how they validate; it has no hook that
runs after a save. Chaining ``config_option_update`` catches every way a value
is saved (the admin form, the action API, our own action) in one place.

When the bridge cannot be reached the values stay saved in CKAN, a pending
flag is stored in ``system_info`` and the admin is told. ``resync`` (called
before launches and capacity reads, on the admin pages and by ``ckan jupyter
status``) pushes again when a push is pending, or when the bridge reports
settings older than the ones CKAN last pushed (its ``updated_at`` is earlier,
or missing: it lost its database). Settings the bridge got later from
elsewhere (an operator's PUT, a test) are left alone rather than fought over.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Optional

import ckan.model as model
import ckan.plugins.toolkit as tk

from . import config as settings
from . import hub_client

log = logging.getLogger(__name__)

#: system_info key set while CKAN's values have not reached the bridge.
PENDING_KEY = "ckanext.jupyternotebook.settings_push_pending"
#: system_info key: the bridge's ``updated_at`` after CKAN's last push.
PUSHED_AT_KEY = "ckanext.jupyternotebook.settings_pushed_at"

#: Seconds between two "is the bridge still in sync?" checks per process.
CHECK_INTERVAL = 60.0

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.I)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_MIN_MEMORY = 64 * 1024**2


def parse_bytes(value: Any) -> int:
    m = _MEMORY_RE.match(str(value))
    if not m:
        raise ValueError(value)
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


# --------------------------------------------------------------------------
# validators (shared by the admin config schema and the action schema)

# short name → (lowest, highest) for integer settings
INT_RANGES: dict[str, tuple[int, int]] = {
    "timeout": (10, 7 * 24 * 3600),
    "idle_timeout": (0, 7 * 24 * 3600),
    "max_guests": (0, 100000),
    "max_sessions": (0, 100000),
    "max_sessions_per_user": (0, 1000),
    "max_guests_per_address": (1, 100000),
    "guest_rate_limit": (0, 100000),
    "cpu_percent": (1, 6400),
    "pool_size": (0, 10000),
}


def _int_in_range(short: str):
    low, high = INT_RANGES[short]

    def validator(value: Any, context: Any) -> str:
        try:
            number = int(str(value).strip())
        except (TypeError, ValueError):
            raise tk.Invalid(tk._("Enter a whole number."))
        if number < low or number > high:
            raise tk.Invalid(
                tk._("Enter a number from {low} to {high}.").format(
                    low=low, high=high))
        return str(number)

    validator.__name__ = f"jupyternotebook_{short}_validator"
    return validator


def memory_limit_validator(value: Any, context: Any) -> str:
    m = _MEMORY_RE.match(str(value))
    if not m:
        raise tk.Invalid(tk._(
            "Enter a size such as 512M or 2G (K, M or G suffix)."))
    if parse_bytes(value) < _MIN_MEMORY:
        raise tk.Invalid(tk._("The memory limit must be at least 64M."))
    return f"{m.group(1)}{m.group(2).upper()}"


def disk_limit_validator(value: Any, context: Any) -> str:
    m = _MEMORY_RE.match(str(value))
    if not m:
        raise tk.Invalid(tk._(
            "Enter a size such as 512M or 2G (K, M or G suffix)."))
    if parse_bytes(value) < _MIN_MEMORY:
        raise tk.Invalid(tk._("The disk limit must be at least 64M."))
    return f"{m.group(1)}{m.group(2).upper()}"


EGRESS_CHOICES = ("public", "none")


def session_egress_validator(value: Any, context: Any) -> str:
    text = str(value).strip().lower()
    if text not in EGRESS_CHOICES:
        raise tk.Invalid(tk._("Choose public or none."))
    return text


def guest_access_validator(value: Any, context: Any) -> str:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return "true"
    if text in ("false", "0", "no", "off"):
        return "false"
    raise tk.Invalid(tk._("Choose yes or no."))


def validators_for(short: str) -> list:
    if short in INT_RANGES:
        return [_int_in_range(short)]
    if short == "memory_limit":
        return [memory_limit_validator]
    if short == "disk_limit":
        return [disk_limit_validator]
    if short == "session_egress":
        return [session_egress_validator]
    if short == "guest_access":
        return [guest_access_validator]
    raise KeyError(short)


def config_schema() -> dict[str, list]:
    """Our runtime-editable keys for ``IConfigurer.update_config_schema``.

    An emptied field on the admin form keeps the value in force.
    """
    ignore_empty = tk.get_validator("ignore_empty")
    return {settings.key(short): [ignore_empty] + validators_for(short)
            for short in settings.RUNTIME_EDITABLE}


# --------------------------------------------------------------------------
# values


def current() -> dict[str, Any]:
    """The runtime settings in force in CKAN now, typed, by short name."""
    return settings.runtime_settings()


def deployed() -> dict[str, Any]:
    """The values from the environment, ckan.ini or the defaults."""
    return {short: settings.deployed(short)
            for short in settings.RUNTIME_EDITABLE}


def admin_saved() -> dict[str, str]:
    """Short names a sysadmin has saved, with the stored text."""
    saved = {}
    for short in settings.RUNTIME_EDITABLE:
        value = model.get_system_info(settings.key(short))
        if value is not None:
            saved[short] = value
    return saved


def _normal(short: str, value: Any) -> Any:
    try:
        if short in ("memory_limit", "disk_limit"):
            return parse_bytes(value)
        if short == "session_egress":
            return str(value).strip().lower()
        if short == "guest_access":
            return tk.asbool(value)
        return int(value)
    except (TypeError, ValueError):
        return value


def differences(bridge_values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """short → (CKAN's value, the bridge's) for every setting that differs."""
    ours = current()
    return {
        short: (value, bridge_values.get(short))
        for short, value in ours.items()
        if _normal(short, value) != _normal(short, bridge_values.get(short))
    }


# --------------------------------------------------------------------------
# pushing

_lock = threading.Lock()
_last_check = 0.0


def is_pending() -> bool:
    return bool(model.get_system_info(PENDING_KEY))


def _mark_pending(reason: str) -> None:
    model.set_system_info(PENDING_KEY, f"{int(time.time())} {reason}"[:200])


def _clear_pending() -> None:
    if model.get_system_info(PENDING_KEY) is not None:
        model.delete_system_info(PENDING_KEY)


def _client(client=None):
    if client is not None:
        return client
    from .hub_client import HubClient
    return HubClient.from_config()


def push(client=None) -> dict[str, Any]:
    """PUT every runtime setting to the bridge; returns what it now enforces.

    Raises the hub client's ``HubUnavailable`` / ``BridgeError`` after
    recording that a push is pending.
    """
    global _last_check
    from .hub_client import BridgeError

    values = current()
    try:
        answer = _client(client).put_settings(values)
    except BridgeError as err:
        _mark_pending(getattr(err, "code", "error"))
        log.warning("could not push settings to the bridge (%s); "
                    "will push again when it answers", err)
        raise
    _clear_pending()
    if isinstance(answer, dict) and answer.get("updated_at"):
        model.set_system_info(PUSHED_AT_KEY, str(answer["updated_at"]))
    _last_check = time.monotonic()
    log.info("pushed settings to the bridge: %s", values)
    return answer




def bridge_is_behind(reported: dict[str, Any]) -> bool:
    """The bridge holds settings older than CKAN's last push (or none)."""
    pushed_at = hub_client.parse_time(model.get_system_info(PUSHED_AT_KEY))
    if pushed_at is None:
        return False  # never pushed: the bridge's deployed values stand
    reported_at = hub_client.parse_time(reported.get("updated_at"))
    return reported_at is None or reported_at < pushed_at


def resync(client=None, force: bool = False) -> Optional[bool]:
    """Push again if a push is pending or the bridge is behind. Never raises.

    Returns True when the bridge is up to date, False when it could not be
    brought up to date (it is down, or refused the values), None when the
    check was skipped because one ran less than ``CHECK_INTERVAL`` ago in
    this process and nothing is pending.
    """
    if not force and not is_pending() \
            and time.monotonic() - _last_check < CHECK_INTERVAL:
        return None
    if not _lock.acquire(blocking=False):
        return None  # another thread of this process is on it
    try:
        return _resync(client)
    except Exception:  # on the launch path: log, never break a launch
        log.exception("checking the bridge's settings failed")
        return False
    finally:
        _lock.release()


def _resync(client) -> bool:
    global _last_check
    from .hub_client import BridgeError

    client = _client(client)
    if is_pending():
        try:
            push(client)
        except BridgeError:
            return False
        return True
    try:
        reported = client.get_settings()
    except BridgeError as err:
        log.info("bridge settings check failed: %s", err)
        return False
    if bridge_is_behind(reported):
        log.warning("the bridge reports settings older than CKAN's last "
                    "push (updated_at %s); pushing again",
                    reported.get("updated_at"))
        try:
            push(client)
        except BridgeError:
            return False
    _last_check = time.monotonic()
    return True


# --------------------------------------------------------------------------
# reset


def reset_to_deployed(client=None) -> bool:
    """Forget admin-saved values; push the deployed ones. True if pushed."""
    from ckan.lib import app_globals
    from .hub_client import BridgeError

    for short in settings.RUNTIME_EDITABLE:
        model.delete_system_info(settings.key(short))
    # Other CKAN processes re-read system_info when this changes.
    model.set_system_info("ckan.config_update", str(time.time()))
    app_globals.reset()
    try:
        push(client)
    except BridgeError:
        return False
    return True


def on_request_finished(sender: Any, **kwargs: Any) -> None:
    """Make CKAN's own "Reset" on /ckan-admin/config reset our keys too.

    CKAN's reset view only deletes its seven core keys from system_info. We
    act once that view has succeeded (a redirect, so the sysadmin check and
    the CSRF check have passed).
    """
    from flask import has_request_context, request

    if not has_request_context() or request.endpoint != "admin.reset_config" \
            or request.method != "POST":
        return
    response = kwargs.get("response")
    if response is None or response.status_code not in (301, 302, 303):
        return
    if not tk.current_user or not getattr(tk.current_user, "sysadmin", False):
        return
    try:
        reset_to_deployed()
    except Exception:  # never turn a finished response into a 500
        log.exception("resetting the Jupyter settings failed")


# --------------------------------------------------------------------------
# the chained action


@tk.chained_action
def config_option_update(original_action, context, data_dict):
    """Save as CKAN does, then push runtime settings to the bridge."""
    from .hub_client import BridgeError

    result = original_action(context, data_dict)
    ours = {settings.key(short) for short in settings.RUNTIME_EDITABLE}
    if not ours.intersection(result):
        return result
    outcome: dict[str, Any] = {"pushed": False, "error": None}
    try:
        outcome["bridge"] = push()
        outcome["pushed"] = True
    except BridgeError as err:
        outcome["error"] = getattr(err, "message", str(err))
        _flash_on_admin_page(tk._(
            "The settings were saved, but the notebook service could not be"
            " reached, so they are not in force there yet. They will be sent"
            " again automatically when it is back."))
    context["jupyternotebook_push"] = outcome
    return result


def _flash_on_admin_page(message: str) -> None:
    """Tell the sysadmin, when the save came from the admin config form."""
    from flask import has_request_context, request

    if has_request_context() and request.endpoint == "admin.config":
        tk.h.flash_error(message)
