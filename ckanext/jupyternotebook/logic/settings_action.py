"""Actions for the runtime settings (issue 5: admin control)."""
from __future__ import annotations

import logging
from typing import Any

import ckan.plugins.toolkit as tk
from ckan.types import Context, DataDict

from .. import config as settings
from .. import runtime_settings
from . import settings_schema

log = logging.getLogger(__name__)


def _bridge_view(include: bool) -> dict[str, Any]:
    """What the bridge enforces now, or why we cannot tell."""
    from ..hub_client import BridgeError, HubClient

    if not include:
        return {"bridge": None, "in_sync": None}
    try:
        reported = HubClient.from_config().get_settings()
    except BridgeError as err:
        return {"bridge": None, "in_sync": None,
                "bridge_error": getattr(err, "message", str(err))}
    values = {k: reported.get(k) for k in settings.RUNTIME_EDITABLE}
    values["updated_at"] = reported.get("updated_at")
    return {"bridge": values,
            "in_sync": not runtime_settings.differences(reported)}


@tk.side_effect_free
def jupyternotebook_settings_show(context: Context,
                                  data_dict: DataDict) -> dict[str, Any]:
    """The runtime-editable Jupyter settings. Sysadmins only.

    :param bridge: also ask the notebook service what it enforces
        (default true)
    :type bridge: bool

    :returns: ``settings`` (in force in CKAN), ``deployed`` (from the
        environment, ckan.ini or the defaults), ``saved`` (names saved by a
        sysadmin), ``pending`` (not yet pushed), ``bridge`` (what the bridge
        reports, or null when it cannot be reached) and ``in_sync``
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_settings_show", context, data_dict)
    data, errors = tk.navl_validate(
        data_dict, settings_schema.settings_show(), context)
    if errors:
        raise tk.ValidationError(errors)
    result = {
        "settings": runtime_settings.current(),
        "deployed": runtime_settings.deployed(),
        "saved": sorted(runtime_settings.admin_saved()),
        "pending": runtime_settings.is_pending(),
    }
    result.update(_bridge_view(data.get("bridge", True)))
    return result


def jupyternotebook_settings_update(context: Context,
                                    data_dict: DataDict) -> dict[str, Any]:
    """Change runtime-editable Jupyter settings and push them to the bridge.

    Values are stored by CKAN (as on the admin config page) and apply to new
    sessions at once; running sessions keep their limits. Sysadmins only.

    :param timeout: maximum session age in seconds (optional; likewise
        ``idle_timeout``, ``max_guests``, ``max_sessions``,
        ``max_sessions_per_user``, ``guest_access``, ``guest_rate_limit``,
        ``cpu_percent``, ``memory_limit`` and ``pool_size``)
    :type timeout: int
    :param reset: forget every saved value and return to the deployed ones
        (environment, ckan.ini, defaults); other parameters are then ignored
    :type reset: bool

    :returns: as ``jupyternotebook_settings_show``, plus ``pushed`` (whether
        the bridge accepted them now)
    :rtype: dictionary
    """
    tk.check_access("jupyternotebook_settings_update", context, data_dict)
    unknown = set(data_dict) - set(settings.RUNTIME_EDITABLE) - {"reset"}
    if unknown:
        raise tk.ValidationError({
            name: [tk._("Not a runtime-editable setting")]
            for name in sorted(unknown)})
    data, errors = tk.navl_validate(
        data_dict, settings_schema.settings_update(), context)
    if errors:
        raise tk.ValidationError(errors)

    if data.pop("reset", False):
        pushed = runtime_settings.reset_to_deployed()
    else:
        if not data:
            raise tk.ValidationError(
                {"settings": [tk._("Give at least one setting to change")]})
        inner: dict[str, Any] = {"user": context.get("user"),
                                 "ignore_auth": True}
        # Through config_option_update, so the values are stored and
        # spread to other CKAN processes exactly as the admin page does it,
        # and our chained config_option_update pushes them.
        tk.get_action("config_option_update")(
            inner, {settings.key(k): v for k, v in data.items()})
        pushed = inner.get("jupyternotebook_push", {}).get("pushed", False)

    result = jupyternotebook_settings_show(
        {"user": context.get("user"), "ignore_auth": True}, {"bridge": True})
    result["pushed"] = pushed
    return result


def get_actions() -> dict:
    return {
        "jupyternotebook_settings_show": jupyternotebook_settings_show,
        "jupyternotebook_settings_update": jupyternotebook_settings_update,
        "config_option_update": runtime_settings.config_option_update,
    }
