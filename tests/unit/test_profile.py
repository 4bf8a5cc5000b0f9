"""The engagement profile (flows/profile.py) as the learning step (flows/learning.py) keeps it: local
hours of opens and clicks, answers per channel, ignored notifications per category, decay, its size,
erasure with the user, and the deterministic holdout."""

import pickle
from collections import Counter
from datetime import timedelta

import pytest

from flows import profile
from flows.learning import Learning, cohort
from flows.profile import HOURS_OF_WEEK, MAX_CATEGORIES, MAX_PENDING, UNIT, hour_of_week

from flow_items import NOW, preferences_record, user_state_item
from learning_items import engagement, keyed, opens, optimal, steps_for

HALF_LIFE_S = timedelta(days=14).total_seconds()


def learned(state) -> dict:
    return state["learn_engagement"]


def test_opens_and_clicks_fill_the_hour_of_the_week_in_the_users_local_time():
    steps, state = steps_for(timezone="Asia/Tokyo")
    steps.process(state, keyed(optimal()), NOW)  # a notification tells the step the user's time zone
    # Friday 12:00 UTC is Friday 21:00 in Tokyo; a click counts like an open, a dismissal does not.
    steps.process(state, opens([NOW]) + [engagement("x", "clicked", NOW), engagement("y", "dismissed", NOW)], NOW)
    hours = learned(state)["hours"]
    assert hours[4 * 24 + 21] == 2 * UNIT and sum(hours) == 2 * UNIT
    assert profile.events(learned(state), NOW, HALF_LIFE_S) == 2


def test_counts_decay_with_the_half_life():
    steps, state = steps_for()
    steps.process(state, opens([NOW - timedelta(days=14)]), NOW)  # learned late: worth half an open
    assert profile.events(learned(state), NOW, HALF_LIFE_S) == pytest.approx(0.5, abs=0.02)
    assert profile.events(learned(state), NOW + timedelta(days=14), HALF_LIFE_S) == pytest.approx(0.25, abs=0.02)
    steps.process(state, opens([NOW + timedelta(days=28)]), NOW + timedelta(days=28))
    assert profile.events(learned(state), NOW + timedelta(days=28), HALF_LIFE_S) == pytest.approx(1.125, abs=0.02)


def test_a_delivered_notification_is_answered_ignored_after_a_day_or_dismissed_at_once():
    steps, state = steps_for()
    sent = {title: steps.process(state, keyed(optimal(title=title)), NOW)[0]["notification_id"]
            for title in ("opened", "left", "dismissed")}
    assert learned(state)["categories"]["social"] == [300, 0]  # in hundredths
    steps.process(state, [engagement(sent["opened"], "opened", NOW + timedelta(minutes=5)),
                          engagement(sent["dismissed"], "dismissed", NOW + timedelta(seconds=4))], NOW)
    assert learned(state)["categories"]["social"] == [300, 100]  # dismissed within seconds: ignored
    assert learned(state)["channels"]["push"] == [300, 100]  # answered once of three sent by push
    # A day later, the one left alone counts as ignored too (seen at the next event).
    steps.process(state, opens([NOW + timedelta(days=1)]), NOW + timedelta(days=1))
    assert profile.ignored_rate(learned(state), "social", NOW, HALF_LIFE_S)[0] == pytest.approx(2 / 3)
    assert learned(state)["pending"] == []


def test_the_fullest_profile_stays_within_a_kilobyte():
    steps, state = steps_for()
    steps.process(state, opens([NOW + timedelta(hours=h) for h in range(HOURS_OF_WEEK)] * 40), NOW)
    for n in range(MAX_CATEGORIES + 3):
        steps.process(state, keyed(optimal(title=f"t{n}", category=f"category-number-{n}")), NOW)
    for n in range(MAX_PENDING * 2):
        steps.process(state, keyed(optimal(title=f"more {n}")), NOW + timedelta(minutes=n))
    full = learned(state)
    assert len(full["pending"]) == MAX_PENDING * 4 and len(full["categories"]) == MAX_CATEGORIES
    assert set(full["hours"]) == {255}  # saturated
    snapshot = pickle.dumps(full, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(snapshot) <= 1024
    assert pickle.loads(snapshot) == full


# A user's state as snapshotted while engagement profiles were packed (flows/profile_pack.py).
PACKED_SNAPSHOT = bytes.fromhex(
    "8005955a010000000000007d948c106c6561726e5f656e676167656d656e74948c12666c6f77732e70726f66696c655f7061"
    "636b948c06756e7061636b9493944219010000010c004575726f70652f506172697301000040010cc4da4101"
    + "00" * 160 +
    "0707070707070707040600696e5f61707004007075736808006d657373616765730600736f6369616c0200bc020000000000"
    "00012c010000640000000202bc02000000000000032c0100006400000002cd1a0530106b020145031e30106b030094859452"
    "94732e")


def test_a_profile_packed_by_an_earlier_snapshot_is_read_back():
    assert pickle.loads(PACKED_SNAPSHOT) == {"learn_engagement": {
        "tz": "Europe/Paris", "at": 1796222981, "hours": bytearray([0] * 160 + [7] * 8),
        "pending": [6861, 1796222981, "messages", "push", 837, 1796223006, "social", "in_app"],
        "channels": {"in_app": [700, 0], "push": [300, 100]},
        "categories": {"messages": [700, 0], "social": [300, 100]}}}


def test_a_snapshotted_profile_learns_on_as_before():
    steps, state = steps_for()
    steps.process(state, keyed(optimal()) + opens([NOW]), NOW)
    restored = pickle.loads(pickle.dumps(state))
    assert restored["learn_engagement"] == learned(state) and type(learned(restored)) is type(learned(state))
    later = NOW + timedelta(days=15)
    items = keyed(optimal(title="next"), later) + opens([later])
    for current in (state, restored):
        steps.process(current, items, later)
    assert learned(restored) == learned(state)


def test_the_profile_is_erased_with_the_user():
    steps, state = steps_for()
    steps.process(state, keyed(optimal()) + opens([NOW]), NOW)
    assert learned(state)["hours"]
    steps.process(state, [user_state_item("notify.preferences", preferences_record("alice", deleted=True))], NOW)
    assert learned(state) == {} and steps.is_empty(state)


def test_the_holdout_is_a_fixed_tenth_of_each_tenants_users():
    shares = {tenant: Counter(cohort(tenant, f"user-{n}", 10) for n in range(20_000)) for tenant in ("acme", "globex")}
    for counts in shares.values():
        assert counts["holdout"] / 20_000 == pytest.approx(0.10, abs=0.01)
    assert cohort("acme", "user-1", 10) == cohort("acme", "user-1", 10)
    assert {cohort("acme", f"user-{n}", 0) for n in range(1000)} == {"treated"}


def test_settings_come_from_the_environment():
    learning = Learning.from_env({"NOTIFYFLOW_PROFILE_HALF_LIFE_DAYS": "7", "NOTIFYFLOW_HOLDOUT_PERCENT": "20"})
    assert (learning.half_life, learning.holdout_percent, learning.min_events) == (timedelta(days=7), 20, 5)
    with pytest.raises(ValueError, match="NOTIFYFLOW_SEND_TIME_WINDOW_HOURS"):
        Learning.from_env({"NOTIFYFLOW_SEND_TIME_WINDOW_HOURS": "a day"})


def test_hour_of_week_follows_the_local_clock_across_dst():
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    winter, summer = NOW.replace(month=1, day=5), NOW  # a Friday in January, one in May, 12:00 UTC
    assert hour_of_week(winter, paris) == 4 * 24 + 13 and hour_of_week(summer, paris) == 4 * 24 + 14
