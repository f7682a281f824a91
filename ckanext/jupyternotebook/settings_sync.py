"""CKAN's runtime settings on the bridge: the push, and pushing again.

CKAN is the authority. A sysadmin saves values on ``/ckan-admin/config`` (or
through ``config_option_update`` / ``jupyternotebook_settings_update``);
CKAN stores them in ``system_info`` and the chained ``config_option_update``
(logic/action.py) calls ``sync.push()``: ``PUT /api/settings``.

The push's state lives in ``system_info``, so every CKAN process shares it:

- *in sync*: neither key below is set;
- *pending*: the bridge could not be reached. ``resync`` (before launches and
  capacity reads, on the admin page, ``ckan jupyter status``) pushes again, at
  most once every ``RETRY_INTERVAL`` per process, until it answers;
- *rejected*: the bridge refused these very values (HTTP 400). Pushing them
  again cannot help, so nothing is pushed until the values change (a new
  save, a reset) or a sysadmin presses "Send now"; the admin page says why.

When in sync, ``resync`` checks at most once every ``CHECK_INTERVAL`` that the
bridge does not hold settings older than CKAN's last push (its
``updated_at`` is earlier, or missing: it lost its database). Settings the
bridge got later from elsewhere (an operator's PUT, a test) are left alone.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any, Optional

import ckan.model as model
import ckan.plugins.toolkit as tk

from . import settings
from . import hub_client
from .logic.validators import parse_bytes

log = logging.getLogger(__name__)

#: system_info key set while CKAN's values have not reached the bridge.
PENDING_KEY = "ckanext.jupyternotebook.settings_push_pending"
#: system_info key: "<fingerprint of the values> <the bridge's message>".
REJECTED_KEY = "ckanext.jupyternotebook.settings_push_rejected"
#: system_info key: the bridge's ``updated_at`` after CKAN's last push.
PUSHED_AT_KEY = "ckanext.jupyternotebook.settings_pushed_at"


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
        if short in ("memory_limit", "disk_limit", "workspace_quota"):
            return parse_bytes(value)
        if short == "session_egress":
            return str(value).strip().lower()
        if short in ("guest_access", "guest_extensions", "persistent_workspaces"):
            return tk.asbool(value)
        return int(value)
    except (TypeError, ValueError):
        return value


def differences(bridge_values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """short → (CKAN's value, the bridge's) for every setting that differs."""
    return {
        short: (value, bridge_values.get(short))
        for short, value in settings.runtime_settings().items()
        if _normal(short, value) != _normal(short, bridge_values.get(short))
    }


def _fingerprint(values: dict[str, Any]) -> str:
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _store(key: str, value: Optional[str]) -> None:
    if value is not None:
        model.set_system_info(key, value[:500])
    elif model.get_system_info(key) is not None:
        model.delete_system_info(key)


def _client(client=None):
    return client if client is not None else hub_client.HubClient.from_config()


class SettingsSync:
    """The push and the resync of one CKAN process (see the module doc)."""

    #: Seconds between two "is the bridge still in sync?" checks.
    CHECK_INTERVAL = 60.0
    #: Seconds between two pushes of pending settings.
    RETRY_INTERVAL = 10.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_check = 0.0
        self.last_attempt = 0.0

    # state, shared by every process through system_info

    @staticmethod
    def is_pending() -> bool:
        return bool(model.get_system_info(PENDING_KEY))

    @staticmethod
    def rejection() -> Optional[str]:
        """The bridge's message when it refused the values in force now."""
        stored = model.get_system_info(REJECTED_KEY)
        if not stored:
            return None
        fingerprint, _, message = stored.partition(" ")
        current = _fingerprint(settings.runtime_settings())
        return message if fingerprint == current else None

    @staticmethod
    def bridge_is_behind(reported: dict[str, Any]) -> bool:
        """The bridge holds settings older than CKAN's last push (or none)."""
        pushed_at = hub_client.parse_time(model.get_system_info(PUSHED_AT_KEY))
        if pushed_at is None:
            return False  # never pushed: the bridge's deployed values stand
        reported_at = hub_client.parse_time(reported.get("updated_at"))
        return reported_at is None or reported_at < pushed_at

    # transitions

    def push(self, client=None) -> dict[str, Any]:
        """PUT every runtime setting; returns what the bridge now enforces.

        Raises ``HubUnavailable`` (recorded as pending) or ``BridgeError``
        (the bridge refused them: recorded as rejected).
        """
        values = settings.runtime_settings()
        self.last_attempt = time.monotonic()
        try:
            answer = _client(client).put_settings(values)
        except hub_client.HubUnavailable as err:
            _store(PENDING_KEY, f"{int(time.time())} {err.code}")
            log.warning("could not push settings to the bridge (%s); "
                        "will push again when it answers", err)
            raise
        except hub_client.BridgeError as err:
            _store(PENDING_KEY, None)
            _store(REJECTED_KEY, f"{_fingerprint(values)} {err.message}")
            log.error("the bridge refused the settings %s: %s; they are not "
                      "pushed again until they change", values, err)
            raise
        _store(PENDING_KEY, None)
        _store(REJECTED_KEY, None)
        if isinstance(answer, dict) and answer.get("updated_at"):
            model.set_system_info(PUSHED_AT_KEY, str(answer["updated_at"]))
        self.last_check = time.monotonic()
        log.info("pushed settings to the bridge: %s", values)
        return answer

    def resync(self, client=None, force: bool = False) -> Optional[bool]:
        """Push again if a push is pending or the bridge is behind. Never
        raises.

        Returns True when the bridge is up to date, False when it could not
        be brought up to date (it is down, or refused these values), None
        when the check was skipped: one ran less than ``CHECK_INTERVAL``
        ago, or a pending push was tried less than ``RETRY_INTERVAL`` ago.
        """
        now = time.monotonic()
        if not force:
            if self.is_pending():
                if now - self.last_attempt < self.RETRY_INTERVAL:
                    return None
            elif now - self.last_check < self.CHECK_INTERVAL:
                return None
        if not self._lock.acquire(blocking=False):
            return None  # another thread of this process is on it
        try:
            return self._resync(_client(client))
        except Exception:  # on the launch path: log, never break a launch
            log.exception("checking the bridge's settings failed")
            return False
        finally:
            self._lock.release()

    def _resync(self, client) -> bool:
        if self.rejection() is not None:
            self.last_check = time.monotonic()
            return False  # the same values would be refused again
        if self.is_pending():
            return self._push_quietly(client)
        try:
            reported = client.get_settings()
        except hub_client.BridgeError as err:
            log.info("bridge settings check failed: %s", err)
            return False
        if self.bridge_is_behind(reported):
            log.warning("the bridge reports settings older than CKAN's last "
                        "push (updated_at %s); pushing again",
                        reported.get("updated_at"))
            if not self._push_quietly(client):
                return False
        self.last_check = time.monotonic()
        return True

    def _push_quietly(self, client) -> bool:
        try:
            self.push(client)
        except hub_client.BridgeError:
            return False
        return True

    def reset_to_deployed(self, client=None) -> bool:
        """Forget admin-saved values; push the deployed ones. True if
        pushed."""
        from ckan.lib import app_globals

        for short in settings.RUNTIME_EDITABLE:
            model.delete_system_info(settings.key(short))
        # Other CKAN processes re-read system_info when this changes.
        model.set_system_info("ckan.config_update", str(time.time()))
        app_globals.reset()
        return self._push_quietly(_client(client))


#: this process's
sync = SettingsSync()
