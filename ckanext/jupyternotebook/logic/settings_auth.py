"""Auth of the settings actions: sysadmins only.

Sysadmins never reach auth functions, so refusing everybody here means
"sysadmins only".
"""
from __future__ import annotations

import ckan.plugins.toolkit as tk
from ckan.types import AuthResult, Context, DataDict


def jupyternotebook_settings_show(context: Context,
                                  data_dict: DataDict) -> AuthResult:
    return {"success": False,
            "msg": tk._("Only sysadmins can see the Jupyter settings")}


def jupyternotebook_settings_update(context: Context,
                                    data_dict: DataDict) -> AuthResult:
    return {"success": False,
            "msg": tk._("Only sysadmins can change the Jupyter settings")}


def jupyternotebook_admin(context: Context, data_dict: DataDict) -> AuthResult:
    """The admin sessions page."""
    return {"success": False,
            "msg": tk._("Only sysadmins can manage Jupyter sessions")}


def get_auth_functions() -> dict:
    return {
        "jupyternotebook_settings_show": jupyternotebook_settings_show,
        "jupyternotebook_settings_update": jupyternotebook_settings_update,
    }
