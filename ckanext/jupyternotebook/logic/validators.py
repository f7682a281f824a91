"""Validators of the plugin's settings, named in ``config_declaration.yaml``
(as CKAN core declares its own) and so used three ways: CKAN's check of the
configuration at start-up, the admin config form, and
``jupyternotebook_settings_update``.

They return text: CKAN stores admin-saved values as text in ``system_info``,
and ``app_globals.reset()`` would turn a falsy 0 or False into "".
The bridge declares the same ranges (``jupyterhub_service/settings.py``);
``tests/test_settings_agree.py`` compares the two.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import ckan.plugins.toolkit as tk

__all__ = [
    "jupyternotebook_int_range",
    "jupyternotebook_size",
    "jupyternotebook_choice",
    "jupyternotebook_bool",
]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.I)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

Validator = Callable[[Any, Any], str]


def parse_bytes(value: Any) -> int:
    """``"1G"`` → 1073741824; raises ValueError on anything else."""
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(value)
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def jupyternotebook_int_range(low: int, high: int) -> Validator:
    """A whole number from ``low`` to ``high``."""
    low, high = int(low), int(high)

    def validator(value: Any, context: Any) -> str:
        try:
            if isinstance(value, bool):
                raise ValueError(value)
            number = int(str(value).strip())
        except (TypeError, ValueError):
            raise tk.Invalid(tk._("Enter a whole number."))
        if number < low or number > high:
            raise tk.Invalid(tk._("Enter a number from {low} to {high}.")
                             .format(low=low, high=high))
        return str(number)

    validator.range = (low, high)
    return validator


def jupyternotebook_size(minimum: str) -> Validator:
    """A size such as 512M or 2G, at least ``minimum``."""
    least = parse_bytes(minimum)

    def validator(value: Any, context: Any) -> str:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise tk.Invalid(tk._(
                "Enter a size such as 512M or 2G (K, M or G suffix)."))
        if parse_bytes(value) < least:
            raise tk.Invalid(tk._("Enter at least {size}.")
                             .format(size=minimum))
        return f"{match.group(1)}{match.group(2).upper()}"

    validator.minimum = least
    return validator


def jupyternotebook_choice(*choices: str) -> Validator:
    """One of ``choices`` (case-insensitive)."""

    def validator(value: Any, context: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise tk.Invalid(tk._("Choose one of: {choices}.")
                             .format(choices=", ".join(choices)))
        return text

    validator.choices = choices
    return validator


def jupyternotebook_bool(value: Any, context: Any) -> str:
    """Yes or no, kept as the text "true" or "false"."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return "true"
    if text in ("false", "0", "no", "off"):
        return "false"
    raise tk.Invalid(tk._("Choose yes or no."))
