"""Validators and schemas of the report actions.

Every refusal names the field and says what would be accepted: a bad cron
expression, an unknown time zone, parameters that are not a JSON object of
scalars, a time limit out of range.
"""
from __future__ import annotations

import json
import keyword
from typing import Any

import ckan.plugins.toolkit as tk
from ckan.logic.schema import validator_args

from . import schedule

TIME_LIMIT_MIN = 10
TIME_LIMIT_MAX = 86400
DEFAULT_TIME_LIMIT = 600
MAX_PARAMETERS = 100


def report_parameters(value: Any, context: Any) -> dict[str, Any]:
    """A JSON object (or its text) of parameter names to JSON scalars."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as err:
            raise tk.Invalid(tk._(
                "Parameters must be a JSON object such as "
                '{"year": 2024, "region": "north"}: %s') % err)
    if not isinstance(value, dict):
        raise tk.Invalid(tk._(
            'Parameters must be a JSON object such as {"year": 2024}'))
    if len(value) > MAX_PARAMETERS:
        raise tk.Invalid(tk._("At most %d parameters") % MAX_PARAMETERS)
    for name, item in value.items():
        if not isinstance(name, str) or not name.isidentifier() \
                or keyword.iskeyword(name):
            raise tk.Invalid(tk._(
                "Parameter name %r is not a Python variable name") % name)
        if item is not None and not isinstance(item, (str, int, float, bool)):
            raise tk.Invalid(tk._(
                "Parameter %s must be a string, number, true, false or "
                "null, not a list or object") % name)
        if isinstance(item, float) and item != item:  # NaN
            raise tk.Invalid(tk._("Parameter %s is not a number") % name)
    return dict(value)


def report_schedule(value: Any, context: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise tk.Invalid(tk._("A schedule is a cron expression such as "
                              "'0 7 * * *'"))
    try:
        return schedule.check_cron(value)
    except schedule.InvalidSchedule as err:
        raise tk.Invalid(str(err))


def report_timezone(value: Any, context: Any) -> str:
    if value is None or value == "":
        return "UTC"
    if not isinstance(value, str):
        raise tk.Invalid(tk._("A time zone is a name such as Europe/Berlin"))
    try:
        schedule.timezone(value)
    except schedule.InvalidSchedule as err:
        raise tk.Invalid(str(err))
    return value.strip()


def report_time_limit(value: Any, context: Any) -> int:
    if value is None or value == "":
        return DEFAULT_TIME_LIMIT
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(str(value).strip())
    except ValueError:
        raise tk.Invalid(tk._("The time limit is a whole number of seconds"))
    if not TIME_LIMIT_MIN <= number <= TIME_LIMIT_MAX:
        raise tk.Invalid(tk._("The time limit must be between %d and %d "
                              "seconds") % (TIME_LIMIT_MIN, TIME_LIMIT_MAX))
    return number


def report_bool(value: Any, context: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise tk.Invalid(tk._("Give true or false"))


@validator_args
def report_create(not_empty, ignore_missing, unicode_safe):
    return {
        "resource_id": [not_empty, unicode_safe],
        "parameters": [ignore_missing, report_parameters],
        "schedule": [ignore_missing, report_schedule],
        "timezone": [ignore_missing, report_timezone],
        "on_data_change": [ignore_missing, report_bool],
        "time_limit": [ignore_missing, report_time_limit],
    }


@validator_args
def report_update(not_empty, ignore_missing, unicode_safe):
    schema = report_create()
    schema.pop("resource_id")
    schema["id"] = [not_empty, unicode_safe]
    return schema


@validator_args
def by_id(not_empty, unicode_safe):
    return {"id": [not_empty, unicode_safe]}


@validator_args
def report_list(not_empty, unicode_safe):
    return {"dataset_id": [not_empty, unicode_safe]}


@validator_args
def report_execute(not_empty, ignore_missing, unicode_safe):
    return {
        "id": [not_empty, unicode_safe],
        "parameters": [ignore_missing, report_parameters],
    }
