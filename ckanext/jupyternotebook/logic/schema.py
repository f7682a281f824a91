from __future__ import annotations

from typing import Any

from ckan.logic.schema import validator_args

from .. import settings


@validator_args
def session_create(not_empty, ignore_missing, unicode_safe):
    return {
        "id": [not_empty, unicode_safe],
        "resource_id": [ignore_missing, unicode_safe],
    }


@validator_args
def session_list(ignore_missing, unicode_safe, boolean_validator):
    return {
        "dataset_id": [ignore_missing, unicode_safe],
        "all": [ignore_missing, boolean_validator],
    }


@validator_args
def session_delete(not_empty, unicode_safe):
    return {"id": [not_empty, unicode_safe]}


@validator_args
def session_extend(not_empty, unicode_safe):
    return {"id": [not_empty, unicode_safe]}


@validator_args
def session_save(not_empty, ignore_missing, unicode_safe):
    return {
        "id": [not_empty, unicode_safe],
        "path": [not_empty, unicode_safe],
        "name": [ignore_missing, unicode_safe],
        "replace_resource_id": [ignore_missing, unicode_safe],
    }


@validator_args
def settings_show(ignore_missing, boolean_validator):
    return {"bridge": [ignore_missing, boolean_validator]}


@validator_args
def settings_update(ignore_missing, boolean_validator):
    """Short names of the runtime-editable settings, all optional, with the
    validators ``config_declaration.yaml`` names for them."""
    schema: dict[str, Any] = {
        short: [ignore_missing] + settings.declared_validators(short)
        for short in settings.RUNTIME_EDITABLE
    }
    schema["reset"] = [ignore_missing, boolean_validator]
    return schema
