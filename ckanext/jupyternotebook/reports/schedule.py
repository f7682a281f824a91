"""Cron expressions and time zones of report schedules.

A schedule is a five-field cron expression read in the report's time zone
(an IANA name such as ``Europe/Berlin``), so "every day at 07:00" stays at
07:00 local time across daylight saving changes. Times are stored in UTC.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import croniter
from croniter.croniter import CroniterError


class InvalidSchedule(ValueError):
    """A message for the person who typed the expression."""


def timezone(name: str) -> zoneinfo.ZoneInfo:
    name = (name or "").strip()
    if not name:
        raise InvalidSchedule("Give a time zone, such as UTC or Europe/Berlin")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(
            f"Unknown time zone {name!r}: use an IANA name such as UTC, "
            "Europe/Berlin or America/New_York")


def check_cron(expression: str) -> str:
    """The expression, normalised, when it is five valid cron fields."""
    expression = " ".join((expression or "").split())
    fields = expression.split(" ") if expression else []
    if len(fields) != 5:
        raise InvalidSchedule(
            f"A schedule has five fields (minute hour day-of-month month "
            f"day-of-week), such as '0 7 * * *'; got {len(fields)} in "
            f"{expression!r}")
    try:
        valid = croniter.is_valid(expression)
    except (CroniterError, ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise InvalidSchedule(
            f"{expression!r} is not a valid cron expression (example: "
            "'0 7 * * 1-5' for 07:00 on weekdays)")
    try:
        croniter(expression, dt.datetime.now(dt.timezone.utc)).get_next(
            dt.datetime)
    except (CroniterError, ValueError):
        raise InvalidSchedule(f"{expression!r} never fires")
    return expression


def next_after(expression: str, tz_name: str,
               after: dt.datetime) -> dt.datetime:
    """The first time the schedule fires strictly after ``after``, in UTC."""
    zone = timezone(tz_name)
    if after.tzinfo is None:
        after = after.replace(tzinfo=dt.timezone.utc)
    start = after.astimezone(zone)
    when = croniter(expression, start).get_next(dt.datetime)
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return when.astimezone(dt.timezone.utc)
