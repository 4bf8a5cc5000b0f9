"""Quiet-hours and digest timing, in wall-clock time of the user's timezone.

Wall times are built as naive local datetimes and only then given a tzinfo and
converted to UTC; with fold=0 zoneinfo already gives the two DST rules we want:
a time in the spring-forward gap moves forward by the gap's length, and a
fall-back time that happens twice resolves to its first occurrence.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Longer quiet stretches (e.g. 00:00-00:00 every day) are cut off here, so the
# caller re-checks at least this often instead of holding a message forever.
MAX_QUIET = timedelta(days=8)

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_DAY_NAMES = {n: i for i, name in enumerate(_WEEKDAYS) for n in (name, name[:3])}
_FREQUENCIES = ("hourly", "daily", "weekly")


class ScheduleError(ValueError):
    """Unusable quiet-hours or digest settings; `.reason` says which field and why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _field(settings: object, section: str, key: str) -> object:
    if not isinstance(settings, dict):
        raise ScheduleError(f"{section}: expected an object, got {type(settings).__name__}")
    if key not in settings:
        raise ScheduleError(f"{section}.{key}: missing")
    return settings[key]


def _parse_time(value: object, field: str) -> time:
    match = _HHMM.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ScheduleError(f"{field}: expected HH:MM (00:00-23:59), got {value!r}")
    return time(int(match[1]), int(match[2]))


def parse_zone(value: object, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)  # type: ignore[arg-type]
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ScheduleError(f"{field}: unknown timezone {value!r}") from None


def _parse_days(value: object) -> set[int]:
    if value is None:
        return set(range(7))
    if not isinstance(value, (list, tuple)):
        raise ScheduleError(f"quiet_hours.days: expected a list of day names, got {value!r}")
    days = set()
    for name in value:
        day = _DAY_NAMES.get(name.strip().lower()) if isinstance(name, str) else None
        if day is None:
            raise ScheduleError(f"quiet_hours.days: unknown day {name!r}")
        days.add(day)
    return days or set(range(7))


def _as_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment!r}")
    return moment.astimezone(timezone.utc)


def _wall_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at).replace(tzinfo=zone, fold=0).astimezone(timezone.utc)


def quiet_until(quiet_hours: dict | None, now: datetime) -> datetime | None:
    """When the quiet stretch around `now` ends (UTC), or None if `now` is not quiet."""
    now = _as_utc(now, "now")
    if quiet_hours is None:
        return None
    start = _parse_time(_field(quiet_hours, "quiet_hours", "start_time"), "quiet_hours.start_time")
    end = _parse_time(_field(quiet_hours, "quiet_hours", "end_time"), "quiet_hours.end_time")
    zone = parse_zone(_field(quiet_hours, "quiet_hours", "timezone"), "quiet_hours.timezone")
    days = _parse_days(quiet_hours.get("days"))

    # A window lasts at most a day (plus a DST hour), so one that started two
    # local days ago cannot still be open; starts beyond the cap don't matter.
    today = now.astimezone(zone).date()
    until = None
    for offset in range(-2, MAX_QUIET.days + 2):
        day = today + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        opens = _wall_to_utc(day, start, zone)
        closes = _wall_to_utc(day + timedelta(days=1 if start >= end else 0), end, zone)
        if until is None:
            # An empty window (wholly inside a DST gap) has opens >= closes and never matches.
            if opens <= now < closes:
                until = closes
        elif opens <= until:
            until = max(until, closes)  # touching or overlapping: one stretch
        else:
            break
    return None if until is None else min(until, now + MAX_QUIET)


def next_digest_at(digest: dict, after: datetime) -> datetime:
    """The first digest boundary strictly after `after`, in UTC.

    `enabled` is not consulted: whether to send is the caller's decision, the
    schedule is the same either way.
    """
    after = _as_utc(after, "after")
    frequency = _field(digest, "digest", "frequency")
    if frequency not in _FREQUENCIES:
        raise ScheduleError(f"digest.frequency: expected one of {', '.join(_FREQUENCIES)}, got {frequency!r}")
    at = _parse_time(_field(digest, "digest", "time"), "digest.time")
    zone = parse_zone(_field(digest, "digest", "timezone"), "digest.timezone")

    if frequency == "hourly":
        # Walk real minutes rather than wall times so the repeated fall-back hour
        # gets its digest too; any offset change makes a match within two hours.
        moment = after.replace(second=0, microsecond=0)
        for _ in range(2 * 60):
            moment += timedelta(minutes=1)
            if moment.astimezone(zone).minute == at.minute:
                return moment
        raise AssertionError(f"no local minute {at.minute} within two hours of {after}")

    today = after.astimezone(zone).date()
    if frequency == "daily":
        candidates = [today + timedelta(days=n) for n in range(-1, 3)]
    else:
        monday = today - timedelta(days=today.weekday())
        candidates = [monday + timedelta(weeks=n) for n in range(-1, 3)]
    return next(t for t in (_wall_to_utc(d, at, zone) for d in candidates) if t > after)
