"""Best send time (flows/send_time.py) through the real per-user steps: held to the hour the user
opens most in their local time, within the window, never past expiry, never into quiet hours; now
with thin history or for the holdout; held items survive a snapshot and are checked again at release."""

import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flows.learning import Learning
from flows.send_time import best_hour

from flow_items import NOW, category_settings, quiet_hours
from learning_items import keyed, opens, optimal, statuses, steps_for

PARIS = "Europe/Paris"  # NOW, Friday 12:00 UTC, is 14:00 there (CEST)
AT_19_PARIS = [NOW.replace(hour=17) - timedelta(days=d) for d in range(1, 7)]
AT_16_PARIS = [NOW.replace(hour=14) - timedelta(days=d) for d in range(1, 4)]
BEST = NOW.replace(hour=17)  # 19:00 in Paris


def learned(history, learning=None, **prefs):
    steps, state = steps_for(learning, timezone=PARIS, **prefs)
    steps.process(state, keyed(optimal(title="first")), NOW)  # tells the profile the user's zone
    steps.release(state, NOW + timedelta(days=1))
    steps.process(state, opens(history), NOW)
    return steps, state


def test_a_notification_is_held_to_the_users_best_local_hour_and_goes_out_then():
    steps, state = learned(AT_19_PARIS)
    out = steps.process(state, keyed(optimal()), NOW)
    [(status, _, reason)] = statuses(out)
    assert status == "deferred" and reason == (
        "held for the best send time until 2024-05-17T17:00:00+00:00 (19:00 Europe/Paris is when the user "
        "opens most, learned from 5 recent opens and clicks)")
    assert steps.due(state) == BEST
    # The held notification is in the snapshot: a restarted flow releases it.
    state = pickle.loads(pickle.dumps(state))
    assert steps.release(state, BEST - timedelta(minutes=1)) == []
    released = statuses(steps.release(state, BEST), BEST)
    assert [s[:2] for s in released] == [("job", "in_app"), ("requested", "in_app"), ("job", "push"),
                                         ("requested", "push")]
    assert released[1][2] == "sent at the best send time, 2024-05-17T17:00:00+00:00"


def test_thin_history_urgent_notifications_and_the_holdout_go_now():
    steps, state = learned(AT_19_PARIS[:4])  # 4 opens: fewer than the 5 it takes
    assert statuses(steps.process(state, keyed(optimal()), NOW))[0][0] == "job"
    steps, state = learned(AT_19_PARIS)
    assert statuses(steps.process(state, keyed(optimal(priority="high")), NOW))[0][0] == "job"
    steps, state = learned(AT_19_PARIS, Learning(holdout_percent=100))
    assert statuses(steps.process(state, keyed(optimal()), NOW))[0][0] == "job"


def test_without_send_time_optimal_the_category_policy_decides():
    steps, state = learned(AT_19_PARIS)
    assert statuses(steps.process(state, keyed(optimal(send_time=None)), NOW))[0][0] == "job"
    assert statuses(steps.process(state, keyed(optimal(send_time=None, category="marketing", type="marketing",
                                                       title="sale")), NOW))[0][0] == "dropped"  # no consent


def test_never_into_quiet_hours_never_past_expiry_never_beyond_the_window():
    history = AT_19_PARIS + AT_16_PARIS
    steps, state = learned(history, quiet_hours=quiet_hours("18:00", "08:00", PARIS))
    steps.process(state, keyed(optimal()), NOW)
    assert steps.due(state) == NOW.replace(hour=14)  # 16:00 in Paris, the best hour outside quiet hours

    steps, state = learned(history)
    steps.process(state, keyed(optimal(metadata={"expires_at": BEST - timedelta(minutes=30)})), NOW)
    assert steps.due(state) == NOW.replace(hour=14)  # 19:00 would be past its expiry

    steps, state = learned(history)
    late = optimal(metadata={"created_at": NOW - timedelta(hours=21)})  # its 24 h end at 15:00 UTC
    steps.process(state, keyed(late), NOW)
    assert steps.due(state) == NOW.replace(hour=14)


def test_at_release_it_is_checked_again_as_things_are_now():
    steps, state = learned(AT_19_PARIS)
    steps.process(state, keyed(optimal()), NOW)
    # Meanwhile the user turned the category off: dropped at release, never sent.
    steps.process(state, keyed_prefs(categories={"social": category_settings(enabled=False)}), NOW)
    assert [s[0] for s in statuses(steps.release(state, BEST), BEST)] == ["dropped"]

    steps, state = learned(AT_19_PARIS)
    steps.process(state, keyed(optimal()), NOW)
    # Meanwhile the user set quiet hours from 18:00: it waits for them to end, then goes.
    steps.process(state, keyed_prefs(quiet_hours=quiet_hours("18:00", "08:00", PARIS)), NOW)
    [(status, _, reason)] = statuses(steps.release(state, BEST), BEST)
    assert (status, reason) == ("deferred", "held until 2024-05-18T06:00:00+00:00")
    assert [s[0] for s in statuses(steps.release(state, NOW.replace(day=18, hour=6)))] == ["job", "requested"] * 2


def test_an_expired_held_notification_is_not_sent():
    steps, state = learned(AT_19_PARIS)
    steps.process(state, keyed(optimal(metadata={"expires_at": BEST + timedelta(hours=1)})), NOW)
    assert steps.due(state) == BEST
    assert statuses(steps.release(state, BEST + timedelta(hours=2)))[0][:1] == ("expired",)


def keyed_prefs(**prefs):
    from flow_items import user_records, user_state_item
    from learning_items import EMAIL

    return [user_state_item(topic, record) for topic, record in user_records(
        "alice", email=EMAIL, timezone=PARIS, **prefs) if topic == "notify.preferences"]


def scores_at(local_hours: list[int]) -> list[float]:
    return [1.0 if bucket % 24 in local_hours else 0.0 for bucket in range(168)]


def test_the_best_hour_is_a_local_hour_across_daylight_saving_changes():
    new_york = ZoneInfo("America/New_York")
    # Saturday 9 March 2024, 20:00 UTC (15:00 EST); the clocks go forward that night: 09:00 is then 13:00 UTC.
    now = datetime(2024, 3, 9, 20, 0, tzinfo=UTC)
    assert best_hour(scores_at([9]), new_york, None, now, now + timedelta(hours=24)) == datetime(
        2024, 3, 10, 13, 0, tzinfo=UTC)
    # 3 November 2024: 01:00 happens twice; the first is the one chosen.
    now = datetime(2024, 11, 2, 20, 0, tzinfo=UTC)
    assert best_hour(scores_at([1]), new_york, None, now, now + timedelta(hours=24)) == datetime(
        2024, 11, 3, 5, 0, tzinfo=UTC)
    # India is 5:30 ahead: its hours start at half past in UTC.
    kolkata = ZoneInfo("Asia/Kolkata")
    assert best_hour(scores_at([20]), kolkata, None, NOW, NOW + timedelta(hours=24)) == datetime(
        2024, 5, 17, 14, 30, tzinfo=UTC)


def test_now_when_no_hour_ahead_beats_it():
    paris = ZoneInfo(PARIS)
    assert best_hour(scores_at([14]), paris, None, NOW, NOW + timedelta(hours=24)) is None  # 14:00 is now
    assert best_hour(scores_at([]), paris, None, NOW, NOW + timedelta(hours=24)) is None
    assert best_hour(scores_at([19]), paris, None, NOW, NOW + timedelta(hours=2)) is None  # beyond the window


def test_an_update_of_a_held_notification_waits_in_its_place():
    steps, state = learned(AT_19_PARIS)
    steps.process(state, keyed(optimal(title="Ping", body="same")), NOW)
    [(status, _, reason)] = statuses(steps.process(state, keyed(optimal(title="Ping", body="same")), NOW))
    assert (status, reason) == ("deferred", "held for the best send time until 2024-05-17T17:00:00+00:00, with the "
                                            "notification it updates")
    released = [item for item in steps.release(state, BEST) if not item.get("outcome")]
    assert [(item["revision"], item["request"]["content"]["body"]) for item in released] == [(1, "same\nsame")]
