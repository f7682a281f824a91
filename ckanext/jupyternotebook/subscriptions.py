"""Signal listeners (as ``ckanext/activity/subscriptions.py``)."""
from __future__ import annotations

import logging
from typing import Any

import ckan.plugins.toolkit as tk

log = logging.getLogger(__name__)


def get_subscriptions() -> dict[Any, list]:
    return {tk.signals.request_finished: [reset_with_ckans_reset]}


def reset_with_ckans_reset(sender: Any, **kwargs: Any) -> None:
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
    from .settings_sync import sync
    try:
        sync.reset_to_deployed()
    except Exception:  # never turn a finished response into a 500
        log.exception("resetting the Jupyter settings failed")
