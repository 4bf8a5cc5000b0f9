from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.schedule import MAX_QUIET, ScheduleError, next_digest_at, quiet_until

UTC = timezone.utc
ZONES = ["UTC", "Europe/Lisbon", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
         "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham"]


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def quiet(start, end, tz="Europe/Lisbon", days=()):
    return {"start_time": start, "end_time": end, "timezone": tz, "days": list(days)}


def digest(frequency, at="09:00", tz="America/New_York"):
    return {"enabled": True, "frequency": frequency, "time": at, "timezone": tz}


# Lisbon is UTC+1 (WEST) in May 2024; 2024-05-17 is a Friday.
@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2024, 5, 17, 11, 59), None),  # 12:59 local, before the window
        (utc(2024, 5, 17, 12, 0), utc(2024, 5, 17, 13, 0)),  # 13:00 local, start is inclusive
        (utc(2024, 5, 17, 12, 30), utc(2024, 5, 17, 13, 0)),
        (utc(2024, 5, 17, 13, 0), None),  # 14:00 local, end is exclusive
    ],
)
def test_same_day_window(now, expected):
    assert quiet_until(quiet("13:00", "14:00"), now) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2024, 5, 16, 22, 0), None),  # Thursday 23:00 local: no window starts Thursday
        (utc(2024, 5, 17, 22, 0), utc(2024, 5, 18, 6, 0)),  # Friday 23:00 local
        (utc(2024, 5, 18, 2, 0), utc(2024, 5, 18, 6, 0)),  # Saturday 03:00, window began Friday
        (utc(2024, 5, 18, 22, 0), None),  # Saturday 23:00: no window starts Saturday
    ],
)
def test_wrapping_window_only_starts_on_listed_days(now, expected):
    assert quiet_until(quiet("22:00", "07:00", days=["fri"]), now) == expected


def test_day_names_accept_full_names_any_case():
    hours = quiet("22:00", "07:00", days=["FRIDAY", " Sat "])
    assert quiet_until(hours, utc(2024, 5, 18, 22, 0)) == utc(2024, 5, 19, 6, 0)


def test_whole_day_windows_merge_into_one_stretch():
    weekend = quiet("00:00", "00:00", days=["sat", "sun"])
    # Saturday 11:00 local -> Monday 00:00 local.
    assert quiet_until(weekend, utc(2024, 5, 18, 10, 0)) == utc(2024, 5, 19, 23, 0)
    assert quiet_until(weekend, utc(2024, 5, 17, 10, 0)) is None


def test_whole_day_window_starting_mid_day():
    assert quiet_until(quiet("09:00", "09:00", days=["wed"]), utc(2024, 5, 16, 7, 0)) == utc(2024, 5, 16, 8, 0)


def test_always_quiet_is_capped_at_eight_days():
    now = utc(2024, 5, 17, 10, 0)
    assert quiet_until(quiet("00:00", "00:00"), now) == now + timedelta(days=8)


def test_overlapping_windows_are_one_stretch():
    # 20:00-21:00 the next day overlaps the following day's 20:00 start.
    hours = quiet("20:00", "20:00", days=["mon", "tue"])
    assert quiet_until(hours, utc(2024, 5, 13, 20, 0)) == utc(2024, 5, 15, 19, 0)


def test_far_from_utc_timezones():
    # Kolkata is UTC+5:30: 22:30 local on the 17th.
    assert quiet_until(quiet("22:00", "07:00", "Asia/Kolkata"), utc(2024, 5, 17, 17, 0)) == utc(2024, 5, 18, 1, 30)
    # Los Angeles is UTC-8 in January: 23:00 local on the 9th.
    assert quiet_until(quiet("22:00", "06:00", "America/Los_Angeles"), utc(2024, 1, 10, 7, 0)) == utc(2024, 1, 10, 14, 0)
    assert quiet_until(quiet("22:00", "06:00", "America/Los_Angeles"), utc(2024, 1, 10, 5, 0)) is None


def test_none_is_never_quiet():
    assert quiet_until(None, utc(2024, 5, 17, 3, 0)) is None


# Berlin: 2024-03-31 02:00 CET -> 03:00 CEST; 2024-10-27 03:00 CEST -> 02:00 CET.
def test_window_across_spring_forward():
    # Starts 22:00 CET (+1), ends 07:00 CEST (+2).
    assert quiet_until(quiet("22:00", "07:00", "Europe/Berlin"), utc(2024, 3, 31, 0, 0)) == utc(2024, 3, 31, 5, 0)


def test_window_across_fall_back():
    # Starts 22:00 CEST (+2), ends 07:00 CET (+1).
    assert quiet_until(quiet("22:00", "07:00", "Europe/Berlin"), utc(2024, 10, 27, 0, 0)) == utc(2024, 10, 27, 6, 0)


def test_start_in_spring_forward_gap_moves_forward():
    hours = quiet("02:30", "04:00", "Europe/Berlin")  # 02:30 doesn't exist: becomes 03:30 CEST
    assert quiet_until(hours, utc(2024, 3, 31, 1, 15)) is None  # 03:15 CEST
    assert quiet_until(hours, utc(2024, 3, 31, 1, 30)) == utc(2024, 3, 31, 2, 0)


def test_window_wholly_inside_spring_forward_gap_is_empty():
    hours = quiet("02:30", "03:00", "Europe/Berlin")  # opens 03:30 CEST, closes 03:00 CEST
    assert quiet_until(hours, utc(2024, 3, 31, 1, 0)) is None
    assert quiet_until(hours, utc(2024, 3, 31, 1, 30)) is None


def test_ambiguous_end_uses_first_occurrence():
    hours = quiet("01:00", "02:30", "Europe/Berlin")  # ends at the first 02:30, CEST
    assert quiet_until(hours, utc(2024, 10, 27, 0, 15)) == utc(2024, 10, 27, 0, 30)  # 02:15 CEST
    assert quiet_until(hours, utc(2024, 10, 27, 1, 15)) is None  # 02:15 CET, the repeat


@pytest.mark.parametrize(
    ("hours", "field"),
    [
        (quiet("25:00", "07:00"), "quiet_hours.start_time"),
        (quiet("22:00", "7:00"), "quiet_hours.end_time"),
        (quiet("22:00", "07:00", tz="Mars/Olympus"), "quiet_hours.timezone"),
        (quiet("22:00", "07:00", tz="Europe"), "quiet_hours.timezone"),
        (quiet("22:00", "07:00", days=["funday"]), "quiet_hours.days"),
        ({"end_time": "07:00", "timezone": "UTC"}, "quiet_hours.start_time"),
    ],
)
def test_bad_quiet_hours_name_the_field(hours, field):
    with pytest.raises(ScheduleError) as err:
        quiet_until(hours, utc(2024, 5, 17, 12, 0))
    assert err.value.reason.startswith(field)


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="timezone-aware"):
        quiet_until(quiet("22:00", "07:00"), datetime(2024, 5, 17, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_digest_at(digest("daily"), datetime(2024, 5, 17, 12, 0))


# New York is UTC-4 (EDT) in May 2024; 2024-05-17 is a Friday.
@pytest.mark.parametrize(
    ("settings_", "after", "expected"),
    [
        (digest("daily"), utc(2024, 5, 17, 12, 0), utc(2024, 5, 17, 13, 0)),
        (digest("daily"), utc(2024, 5, 17, 13, 0), utc(2024, 5, 18, 13, 0)),  # on the boundary
        (digest("daily"), utc(2024, 5, 17, 13, 0, 1), utc(2024, 5, 18, 13, 0)),
        (digest("daily", "23:30"), utc(2024, 5, 18, 2, 0), utc(2024, 5, 18, 3, 30)),  # local date lags UTC
        (digest("hourly", "09:15"), utc(2024, 5, 17, 12, 0), utc(2024, 5, 17, 12, 15)),
        (digest("hourly", "09:15"), utc(2024, 5, 17, 12, 15), utc(2024, 5, 17, 13, 15)),  # on the boundary
        (digest("hourly", "18:00", "Asia/Kolkata"), utc(2024, 5, 17, 9, 10), utc(2024, 5, 17, 9, 30)),
        (digest("weekly"), utc(2024, 5, 17, 12, 0), utc(2024, 5, 20, 13, 0)),
        (digest("weekly"), utc(2024, 5, 20, 12, 59), utc(2024, 5, 20, 13, 0)),
        (digest("weekly"), utc(2024, 5, 20, 13, 0), utc(2024, 5, 27, 13, 0)),  # on the boundary
        (digest("weekly", "07:00", "Asia/Kolkata"), utc(2024, 5, 19, 23, 0), utc(2024, 5, 20, 1, 30)),
    ],
)
def test_next_digest(settings_, after, expected):
    assert next_digest_at(settings_, after) == expected


# New York: 2024-03-10 02:00 EST -> 03:00 EDT; 2024-11-03 02:00 EDT -> 01:00 EST.
def test_daily_digest_in_spring_forward_gap_moves_forward():
    assert next_digest_at(digest("daily", "02:30"), utc(2024, 3, 10, 5, 0)) == utc(2024, 3, 10, 7, 30)  # 03:30 EDT


def test_daily_digest_at_ambiguous_time_uses_first_occurrence():
    at_0130 = digest("daily", "01:30")
    assert next_digest_at(at_0130, utc(2024, 11, 3, 4, 0)) == utc(2024, 11, 3, 5, 30)  # 01:30 EDT
    assert next_digest_at(at_0130, utc(2024, 11, 3, 5, 30)) == utc(2024, 11, 4, 6, 30)  # skips 01:30 EST


def test_hourly_digest_keeps_every_real_hour_across_dst():
    assert next_digest_at(digest("hourly", "00:30"), utc(2024, 11, 3, 5, 30)) == utc(2024, 11, 3, 6, 30)  # 01:30 EST
    assert next_digest_at(digest("hourly", "00:30"), utc(2024, 3, 10, 6, 30)) == utc(2024, 3, 10, 7, 30)  # 03:30 EDT


@pytest.mark.parametrize(
    ("settings_", "field"),
    [
        (digest("monthly"), "digest.frequency"),
        (digest("daily", "9am"), "digest.time"),
        (digest("daily", tz="America/Gotham"), "digest.timezone"),
        ({"frequency": "daily", "timezone": "UTC"}, "digest.time"),
        (None, "digest"),
    ],
)
def test_bad_digest_names_the_field(settings_, field):
    with pytest.raises(ScheduleError) as err:
        next_digest_at(settings_, utc(2024, 5, 17, 12, 0))
    assert err.value.reason.startswith(field)


instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31), timezones=st.just(UTC))
wall_times = st.builds("{:02d}:{:02d}".format, st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59]))
quiet_settings = st.builds(
    quiet, wall_times, wall_times, st.sampled_from(ZONES),
    st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), unique=True),
)


@settings(max_examples=300, deadline=None)
@given(quiet_settings, instants)
def test_quiet_until_properties(hours, now):
    until = quiet_until(hours, now)
    if until is None:
        return
    assert now < until <= now + MAX_QUIET
    again = quiet_until(hours, until)
    # The stretch is over at `until`, unless it was only cut off by the cap.
    assert again is None if until < now + MAX_QUIET else again > until
    if until < now + MAX_QUIET:
        assert quiet_until(hours, until - timedelta(microseconds=1)) == until


@settings(max_examples=300, deadline=None)
@given(st.builds(digest, st.sampled_from(["hourly", "daily", "weekly"]), wall_times, st.sampled_from(ZONES)), instants)
def test_next_digest_properties(settings_, after):
    boundary = next_digest_at(settings_, after)
    assert after < boundary <= after + timedelta(days=7, hours=1)
    assert boundary.utcoffset() == timedelta(0)
    # Nothing was skipped: from just before the boundary, it is still the next one.
    assert next_digest_at(settings_, boundary - timedelta(microseconds=1)) == boundary
    if settings_["frequency"] == "hourly":
        # Lord Howe's half-hour DST shift can stretch one gap to 90 minutes.
        assert boundary - after <= timedelta(minutes=90)
