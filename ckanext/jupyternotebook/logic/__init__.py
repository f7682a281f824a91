"""Action and auth registries: the launch flow's (action.py, auth.py) plus
the admin settings' (settings_action.py, settings_auth.py)."""
from __future__ import annotations

from typing import Any, Callable


def _public(module: Any) -> dict[str, Callable[..., Any]]:
    return {name: member for name, member in vars(module).items()
            if name.startswith("jupyternotebook_") and callable(member)}


def actions() -> dict[str, Callable[..., Any]]:
    from . import action, settings_action
    return {**_public(action), **settings_action.get_actions()}


def auth_functions() -> dict[str, Callable[..., Any]]:
    from . import auth, settings_auth
    return {**_public(auth), **settings_auth.get_auth_functions()}
