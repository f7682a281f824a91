"""Schemas of the settings actions (issue 5: admin control)."""
from __future__ import annotations

from typing import Any

from ckan.logic.schema import validator_args

from .. import config as settings
from .. import runtime_settings


@validator_args
def settings_show(ignore_missing, boolean_validator):
    return {"bridge": [ignore_missing, boolean_validator]}


@validator_args
def settings_update(ignore_missing, boolean_validator):
    """Short names of the runtime-editable settings, all optional."""
    schema: dict[str, Any] = {
        short: [ignore_missing] + runtime_settings.validators_for(short)
        for short in settings.RUNTIME_EDITABLE
    }
    schema["reset"] = [ignore_missing, boolean_validator]
    return schema
