"""A user's engagement profile: what the flow learns from notify.engagement, kept in the user's
snapshotted state and small (at most about 1 KB, tests/unit/test_profile.py measures the fullest).

- `hours`: opens and clicks per hour of the week in the user's local time (168 one-byte counters,
  1/UNIT of an event each, saturating at about 32 events), the basis of the best send time;
- `channels`: per channel, notifications delivered there and answered (opened or clicked), the basis
  of channel affinity;
- `categories`: per category, notifications delivered and ignored (no open or click within 24 h, or
  dismissed within seconds of delivery), the basis of fatigue;
- `pending`: the latest notifications delivered and not yet answered or ignored (at most MAX_PENDING;
  an older one pushed out is forgotten, delivered count and all, rather than guessed).

Every count decays exponentially with one half-life (default 14 days), as forward decay: an event
at time t adds 2^((t - at)/half-life) to its counter, `at` being the profile's landmark, and once the
landmark is a half-life old every counter is halved and the landmark moves on. So nothing is touched
between events, one-byte counters lose at most half a unit a half-life to rounding, and the value of
a counter now is what it holds times 2^(-(now - at)/half-life). Rates are ratios of counts decayed
alike. The profile is a plain dict (the learning step's state, pickled as it is in snapshots), so
erasing the user's state erases it.
"""

from __future__ import annotations

import sys
import zlib
from datetime import UTC, datetime

from kernel.schedule import ScheduleError, parse_zone

UNIT = 8  # one event in an hour-of-week counter
COUNT_UNIT = 100  # one notification in a per-channel or per-category count (integers pickle small)
HOURS_OF_WEEK = 168
MAX_PENDING = 10
MAX_CATEGORIES = 8
IGNORED_AFTER_S = 24 * 3600
DISMISSED_WITHIN_S = 10
ANSWERS = ("opened", "clicked")
INTERRUPTIVE = ("push", "email", "sms", "webhook")


def seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def notification_key(notification_id: str) -> int:
    """16 bits: among the few notifications waiting, a collision is rare and costs one wrong answer."""
    return zlib.crc32(notification_id.encode()) & 0xFFFF


def decay(profile: dict, now_s: int, half_life_s: float) -> None:
    """Move the landmark up to `now_s`, halving every counter for each half-life it moves."""
    landmark = profile.get("at")
    if landmark is None:
        profile["at"] = now_s
        return
    halvings = int((now_s - landmark) // half_life_s)
    if halvings <= 0:
        return
    profile["at"] = landmark + halvings * half_life_s
    if "hours" in profile:
        profile["hours"] = bytearray(count >> min(halvings, 8) for count in profile["hours"])
    factor = 0.5 ** halvings
    for table in (profile.get("channels"), profile.get("categories")):
        for name, counts in list((table or {}).items()):
            counts[0], counts[1] = round(counts[0] * factor), round(counts[1] * factor)
            if counts[0] < COUNT_UNIT // 20:
                del table[name]


def weight(profile: dict, at_s: float, half_life_s: float) -> float:
    """What one event at `at_s` adds to a counter (1 at the landmark)."""
    return 2.0 ** ((at_s - profile["at"]) / half_life_s)


def units(profile: dict, at_s: float, half_life_s: float) -> int:
    """weight() in the integer units of the per-channel and per-category counts."""
    return round(COUNT_UNIT * weight(profile, at_s, half_life_s))


def now_value(profile: dict, now: datetime, half_life_s: float) -> float:
    """What one unit of a counter is worth at `now`."""
    return 2.0 ** ((profile["at"] - seconds(now)) / half_life_s) if "at" in profile else 1.0


def zone_of(profile: dict):
    try:
        return parse_zone(profile.get("tz") or "UTC", "timezone")
    except ScheduleError:
        return UTC


def hour_of_week(moment: datetime, zone) -> int:
    local = moment.astimezone(zone)
    return local.weekday() * 24 + local.hour


def learn(profile: dict, engagement: dict, now: datetime, half_life_s: float) -> None:
    """An engagement event: opens and clicks fill the local hour-of-week histogram and answer the
    notification; a dismissal within seconds of delivery marks it ignored."""
    settle(profile, seconds(now), half_life_s)
    action, at = engagement["action"], engagement["at"]
    if action in ANSWERS:
        hours = profile.get("hours")
        if hours is None:
            hours = profile["hours"] = bytearray(HOURS_OF_WEEK)
        bucket = hour_of_week(at, zone_of(profile))
        hours[bucket] = min(255, hours[bucket] + round(UNIT * weight(profile, seconds(at), half_life_s)))
        entry = take_pending(profile, engagement["notification_id"])
        if entry is not None and (counts := profile["channels"].get(entry[3])) is not None:
            counts[1] += units(profile, entry[1], half_life_s)
    elif action == "dismissed":
        index = find_pending(profile, engagement["notification_id"])
        if index is not None and seconds(at) - profile["pending"][index + 1] <= DISMISSED_WITHIN_S:
            ignored(profile, take_pending(profile, engagement["notification_id"]), half_life_s)


# `pending` is one flat list, ENTRY values a notification (key, sent at, category, channel): one object
# in the snapshot rather than one per notification.
ENTRY = 4


def find_pending(profile: dict, notification_id: str) -> int | None:
    key, pending = notification_key(notification_id), profile.get("pending") or ()
    return next((index for index in range(0, len(pending), ENTRY) if pending[index] == key), None)


def take_pending(profile: dict, notification_id: str) -> tuple | None:
    index = find_pending(profile, notification_id)
    return None if index is None else pop_pending(profile["pending"], index)


def pop_pending(pending: list, index: int = 0) -> tuple:
    entry = tuple(pending[index:index + ENTRY])
    del pending[index:index + ENTRY]
    return entry


def ignored(profile: dict, entry: tuple, half_life_s: float) -> None:
    if (counts := profile.get("categories", {}).get(entry[2])) is not None:
        counts[1] += units(profile, entry[1], half_life_s)


def delivered(profile: dict, item: dict, now: datetime, half_life_s: float) -> None:
    """A notification went out now: it waits here for an answer, or 24 h to count as ignored.
    An update is the same notification; an escalation moves it to the next channel, so the one before
    counts as not answered, and an answer now counts for the new one."""
    if item["revision"]:
        return
    now_s = seconds(now)
    settle(profile, now_s, half_life_s)
    send = item["route"]["send"]
    channel = next((c for c in send if c in INTERRUPTIVE), send[0] if send else "in_app")
    pending, added = profile.setdefault("pending", []), units(profile, now_s, half_life_s)
    if item.get("escalation"):
        if (index := find_pending(profile, item["notification_id"])) is not None:
            pending[index + 3] = channel
            count(profile.setdefault("channels", {}), channel, len(INTERRUPTIVE) + 1, added)
        return
    category = sys.intern(item["request"]["category"])  # one copy per snapshot, however often it appears
    pending.extend((notification_key(item["notification_id"]), now_s, category, channel))
    count(profile.setdefault("channels", {}), channel, len(INTERRUPTIVE) + 1, added)
    count(profile.setdefault("categories", {}), category, MAX_CATEGORIES, added)
    if len(pending) > MAX_PENDING * ENTRY:  # pushed out unanswered: forgotten, not guessed
        _, sent_s, old_category, old_channel = pop_pending(pending)
        for table, name in ((profile["channels"], old_channel), (profile["categories"], old_category)):
            if name in table:
                table[name][0] = max(0, table[name][0] - units(profile, sent_s, half_life_s))


def count(table: dict, name: str, limit: int, added: int) -> None:
    counts = table.get(name)
    if counts is None:
        if len(table) >= limit:  # the least delivered makes room
            del table[min(table, key=lambda other: table[other][0])]
        counts = table[name] = [0, 0]
    counts[0] += added


def settle(profile: dict, now_s: int, half_life_s: float) -> None:
    """Decay, and count what waited 24 h without an answer as ignored."""
    decay(profile, now_s, half_life_s)
    pending = profile.get("pending")
    while pending and now_s - pending[1] >= IGNORED_AFTER_S:
        ignored(profile, pop_pending(pending), half_life_s)


def events(profile: dict, now: datetime, half_life_s: float) -> float:
    """Opens and clicks learned, decayed to `now`: how much history the best hour rests on."""
    hours = profile.get("hours")
    return sum(hours) / UNIT * now_value(profile, now, half_life_s) if hours else 0.0


def hour_scores(profile: dict) -> list[float]:
    """Per hour of the week: its own opens and clicks plus a quarter of that hour's across the week,
    so a habit seen on other days counts for a day not yet seen."""
    hours = profile.get("hours")
    if hours is None:
        return [0.0] * HOURS_OF_WEEK
    by_hour = [sum(hours[day * 24 + hour] for day in range(7)) for hour in range(24)]
    return [hours[bucket] + 0.25 * by_hour[bucket % 24] for bucket in range(HOURS_OF_WEEK)]


def ignored_rate(profile: dict, category: str, now: datetime, half_life_s: float) -> tuple[float, float]:
    """(share of the category's notifications ignored, how many were delivered, decayed to `now`)."""
    counts = (profile.get("categories") or {}).get(category)
    if not counts or counts[0] <= 0:
        return 0.0, 0.0
    return min(1.0, counts[1] / counts[0]), counts[0] / COUNT_UNIT * now_value(profile, now, half_life_s)


def answer_rates(profile: dict, now: datetime, half_life_s: float,
                 prior_weight: float = 3.0) -> tuple[dict[str, tuple[float, float]], float]:
    """Per channel: (smoothed share of notifications answered, how many were delivered, decayed to
    `now`), and the user's overall share, which channels with little or no history lean on."""
    channels, value = profile.get("channels") or {}, now_value(profile, now, half_life_s) / COUNT_UNIT
    delivered_all = sum(counts[0] for counts in channels.values())
    overall = sum(counts[1] for counts in channels.values()) / delivered_all if delivered_all else 0.0
    return {channel: ((answered * value + prior_weight * overall) / (sent * value + prior_weight), sent * value)
            for channel, (sent, answered) in channels.items()}, overall
