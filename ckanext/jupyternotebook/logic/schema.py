from __future__ import annotations

from typing import Any

from ckan.logic.schema import validator_args



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
def capacity_show():
    return {}
