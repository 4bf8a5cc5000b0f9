"""Fatigue (flows/rate_limit.py) and channel affinity (flows/channels.py) through the real per-user
steps: a category the user ignores gets a lower cap and its excess goes to the digest, until answers
come back; critical, security and the holdout are never touched. The channel the user answers most
goes first among those their preferences allow."""

from datetime import timedelta

from flows.learning import Learning

from flow_items import NOW, channel_settings, request
from learning_items import engagement, keyed, statuses, steps_for

DAY = timedelta(days=1)


def social(n: int, day: int, **fields) -> dict:
    return request(**{"title": f"post {n}", "category": "social",
                      "metadata": {"created_at": NOW + day * DAY + timedelta(minutes=n)}, **fields})


def ignored_for_days(days: int = 3, per_day: int = 3, learning=None):
    """A user who got `per_day` social notifications a day and opened none."""
    steps, state = steps_for(learning)
    for day in range(days):
        for n in range(per_day):
            steps.process(state, keyed(social(n, day), NOW + day * DAY), NOW + day * DAY)
    return steps, state


def outcomes(steps, state, req, at) -> list[str]:
    return [status for status, _, _ in statuses(steps.process(state, keyed(req, at), at))]


def test_an_ignored_category_gets_a_lower_cap_and_the_excess_goes_to_the_digest():
    steps, state = ignored_for_days()
    day = 4
    assert outcomes(steps, state, social(0, day), NOW + day * DAY)[0] == "job"  # the lowered cap: 1 a day
    [(status, _, reason)] = statuses(steps.process(state, keyed(social(1, day), NOW + day * DAY), NOW + day * DAY))
    assert (status, reason) == ("digested", "fatigue: 87% of social ignored lately, cap lowered to 1 a day")
    # It waits for a daily digest (09:00 in the user's zone), not the hourly one capped excess gets.
    due = state["digest"]["fatigue"]["due"]
    assert (due.hour, due.minute) == (9, 0)
    [digest] = [item for item in steps.release(state, due) if item.get("digest_items")]
    assert digest["notification_id"] == f"digest:alice:fatigue:{due:%Y%m%dT%H%M}"
    assert "post 1" in [entry["title"] for entry in digest["digest_items"]]


def test_critical_security_and_the_holdout_are_never_touched():
    steps, state = ignored_for_days()
    day = 4
    for n, fields in enumerate([{}, {"priority": "critical"}, {"category": "security"}, {"category": "security"}]):
        assert outcomes(steps, state, social(n, day, **fields), NOW + day * DAY)[0] == "job", fields
    steps, state = ignored_for_days(learning=Learning(holdout_percent=100))
    assert [outcomes(steps, state, social(n, 4), NOW + 4 * DAY)[0] for n in range(3)] == ["job"] * 3


def test_the_cap_recovers_as_answers_come_back():
    steps, state = ignored_for_days()
    day, capped = 4, []
    while day < 30:
        at = NOW + day * DAY
        [first] = [item for item in steps.process(state, keyed(social(0, day), at), at) if not item.get("outcome")]
        steps.process(state, [engagement(first["notification_id"], "opened", at + timedelta(minutes=10))], at)
        capped.append(outcomes(steps, state, social(1, day), at + timedelta(hours=1))[0])
        if capped[-1] == "job":
            break
        day += 1
    assert capped[0] == "digested" and capped[-1] == "job", capped


def affine_to_email(learning=None):
    """A user who ignores push and answers email."""
    steps, state = steps_for(learning)
    for n in range(4):
        for channel in ("push", "email"):
            [sent] = [item for item in steps.process(state, keyed(request(title=f"{channel} {n}", channels=[channel])),
                                                     NOW) if not item.get("outcome")]
            if channel == "email":
                steps.process(state, [engagement(sent["notification_id"], "opened", NOW, channel="email")], NOW)
    return steps, state


def test_the_channel_the_user_answers_most_goes_first():
    steps, state = affine_to_email()
    [out] = steps.process(state, keyed(request(title="news")), NOW)
    assert out["route"]["send"] == ["in_app", "email"] and out["route"]["fallback"][0]["channel"] == "push"
    [_, requested, *_] = statuses([out])
    assert requested[2] == "email chosen by affinity: answered 79%, push 21%"
    # Urgent notifications keep their usual order.
    [high] = steps.process(state, keyed(request(title="urgent", priority="high")), NOW)
    assert high["route"]["send"] == ["in_app", "push"]


def test_preferences_always_win_over_affinity():
    steps, state = affine_to_email()
    from flow_items import user_records, user_state_item

    steps.process(state, [user_state_item(topic, record) for topic, record in user_records(
        "alice", email="alice@example.com", channels={"email": channel_settings(enabled=False)})
        if topic == "notify.preferences"], NOW)
    [out] = steps.process(state, keyed(request(title="news")), NOW)
    assert out["route"]["send"] == ["in_app", "push"] and out["route"]["fallback"] == []


def test_each_part_switches_off_per_category():
    learning = Learning.from_env({"NOTIFYFLOW_LEARNING_OFF": "social:fatigue, *:affinity",
                                  "NOTIFYFLOW_HOLDOUT_PERCENT": "0"})
    steps, state = ignored_for_days(learning=learning)
    assert [outcomes(steps, state, social(n, 4), NOW + 4 * DAY)[0] for n in range(3)] == ["job"] * 3
    steps, state = affine_to_email(learning)
    [out] = steps.process(state, keyed(request(title="news")), NOW)
    assert out["route"]["send"] == ["in_app", "push"]
