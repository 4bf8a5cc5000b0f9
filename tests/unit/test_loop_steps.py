"""What the user does changes what the flow does next, through the real per-user steps
(flows/notifications.py per_user_steps): escalation if unseen, engagement cancelling it, fresh
preferences when anything held is released, per-channel frequency, one-click unsubscribe."""

from datetime import UTC, datetime, timedelta

from flows.notifications import per_user_steps
from flows.outbox import outgoing
from kernel.topics import ENGAGEMENT, PREFERENCES, outbox_topic

from flow_items import (NOW, Pipeline, category_settings, channel_settings, device, digest_settings, quiet_hours,
                        request, sample_catalog, user_records, user_state_item)

EMAIL = "alice@example.com"


def steps_for(**prefs):
    """The per-user steps of an online user with a phone and an email address, and its state."""
    steps = per_user_steps(sample_catalog())
    state = steps.new_state()
    prefs = {"email": EMAIL, **prefs}
    items = [user_state_item(topic, record) for topic, record in user_records("alice", devices=[device()],
                                                                              online=True, **prefs)]
    assert steps.process(state, items, NOW) == []
    return steps, state


def keyed(req) -> list[dict]:
    return Pipeline(until="expand_audience").run(req)


def engagement(notification_id: str, action: str = "seen", at: datetime = NOW, **fields) -> dict:
    record = {"notification_id": notification_id, "user_id": "alice", "action": action, "action_id": None,
              "device_id": "laptop", "channel": "in_app", "at": at, "campaign_id": None, "variant": None,
              "category": "messages", **fields}
    return user_state_item(ENGAGEMENT, record)


def sent(items) -> list[tuple[str, str | None]]:
    """(status, channel) of everything the items produce, jobs as ("job", channel)."""
    out = []
    for topic, _, value in [record for item in items for record in outgoing(item, NOW)]:
        out.append(("job", value["channel"]) if topic.startswith("notify.outbox.")
                   else (value.get("status", topic), value.get("channel")))
    return out


def test_an_unseen_toast_escalates_to_push_then_email_and_each_step_is_counted():
    steps, state = steps_for()
    [toast] = steps.process(state, keyed(request(category="messages")), NOW)
    assert toast["route"] == {"send": ["in_app"], "fallback": [{"channel": "push", "after_seconds": 300},
                                                               {"channel": "email", "after_seconds": 1800}]}
    assert steps.due(state) == NOW + timedelta(seconds=300)
    assert steps.release(state, NOW + timedelta(seconds=299)) == []
    first = steps.release(state, NOW + timedelta(seconds=300))
    assert sent(first) == [("escalated", "push"), ("job", "push"), ("requested", "push")]
    assert first[0]["reason"] == "not seen within 300 s: trying push"
    assert steps.due(state) == NOW + timedelta(seconds=1800)
    second = steps.release(state, NOW + timedelta(seconds=1800))
    assert sent(second) == [("escalated", "email"), ("job", "email"), ("requested", "email")]
    assert outgoing(second[1], NOW)[0][0] == outbox_topic("email", "normal")
    assert steps.due(state) is None


def test_engagement_on_any_device_cancels_the_rest_of_the_chain():
    for action in ("seen", "read", "opened", "clicked", "dismissed"):
        steps, state = steps_for()
        [toast] = steps.process(state, keyed(request()), NOW)
        assert steps.process(state, [engagement(toast["notification_id"], action)], NOW + timedelta(seconds=10)) == []
        assert steps.due(state) is None
        assert steps.release(state, NOW + timedelta(hours=2)) == []


def test_engagement_read_before_its_request_still_cancels_the_chain():
    steps, state = steps_for()
    req = request()
    [item] = keyed(req)
    # A replay after a crash may read the two topics in another order.
    steps.process(state, [engagement(req["id"])], NOW)
    [toast] = steps.process(state, [item], NOW)
    assert toast["notification_id"] == req["id"] and steps.due(state) is None


def test_an_escalation_due_in_quiet_hours_waits_for_them_to_end():
    steps, state = steps_for(quiet_hours=quiet_hours("12:03", "12:20"))
    [toast] = steps.process(state, keyed(request()), NOW)  # 12:00, before the quiet window
    assert "outcome" not in toast
    out = steps.release(state, NOW + timedelta(seconds=300))
    assert sent(out) == [("escalated", "push"), ("deferred", None)]
    assert steps.release(state, datetime(2024, 5, 17, 12, 19, tzinfo=UTC)) == []
    after = steps.release(state, datetime(2024, 5, 17, 12, 20, tzinfo=UTC))
    assert sent(after) == [("job", "push"), ("requested", "push")]
    later = steps.release(state, NOW + timedelta(seconds=1800))
    assert sent(later) == [("escalated", "email"), ("job", "email"), ("requested", "email")]


def test_escalations_that_all_fall_in_quiet_hours_end_as_the_furthest_one_only():
    steps, state = steps_for(quiet_hours=quiet_hours("12:03", "13:00"))
    steps.process(state, keyed(request()), NOW)
    steps.release(state, NOW + timedelta(seconds=300))
    assert sent(steps.release(state, NOW + timedelta(seconds=1800))) == [("escalated", "email"), ("deferred", None)]
    ended = steps.release(state, datetime(2024, 5, 17, 13, 0, tzinfo=UTC))
    assert sent(ended) == [("dropped", "push"), ("job", "email"), ("requested", "email")]
    assert ended[0]["reason"] == "superseded by the email escalation"


def test_an_escalation_to_a_channel_the_user_turned_off_meanwhile_is_dropped_and_the_chain_goes_on():
    steps, state = steps_for()
    steps.process(state, keyed(request(category="messages")), NOW)
    turned_off = [user_state_item(topic, record) for topic, record in user_records(
        "alice", email=EMAIL, channels={"push": channel_settings(enabled=False)})]
    steps.process(state, turned_off, NOW + timedelta(seconds=60))
    out = steps.release(state, NOW + timedelta(seconds=300))
    assert sent(out) == [("escalated", "push"), ("dropped", None)]
    assert sent(steps.release(state, NOW + timedelta(seconds=1800)))[1:] == [("job", "email"), ("requested", "email")]


def test_an_expired_notification_does_not_escalate():
    steps, state = steps_for()
    steps.process(state, keyed(request(metadata={"expires_at": NOW + timedelta(seconds=200)})), NOW)
    assert sent(steps.release(state, NOW + timedelta(seconds=300))) == [("expired", "push")]
    assert steps.due(state) is None


def test_critical_goes_everywhere_at_once_and_never_escalates():
    steps, state = steps_for()
    [alert] = steps.process(state, keyed(request(priority="critical", category="security")), NOW)
    assert set(alert["route"]["send"]) == {"in_app", "push", "email"} and alert["route"]["fallback"] == []
    assert steps.due(state) is None


def test_escalations_count_against_the_rate_limit():
    steps, state = steps_for()
    steps.process(state, keyed(request(title="one")), NOW)
    before = len(state["rate_limit"]["sent"])
    steps.release(state, NOW + timedelta(seconds=300))
    assert len(state["rate_limit"]["sent"]) == before + 1


def test_an_opt_out_while_held_for_quiet_hours_wins_at_release():
    steps, state = steps_for(quiet_hours=quiet_hours("11:00", "13:00"))
    [held] = steps.process(state, keyed(request(category="social")), NOW)
    assert held["outcome"] == "deferred"
    opted_out = [user_state_item(topic, record) for topic, record in user_records(
        "alice", email=EMAIL, quiet_hours=quiet_hours("11:00", "13:00"),
        categories={"social": category_settings(enabled=False)})]
    steps.process(state, opted_out, NOW + timedelta(minutes=5))
    [released] = steps.release(state, datetime(2024, 5, 17, 13, 0, tzinfo=UTC))
    assert (released["outcome"], released["reason"]) == ("dropped", "category social is turned off")


def test_a_digest_leaves_out_what_the_user_turned_off_while_it_waited():
    steps, state = steps_for(digest=digest_settings("daily", "18:00"))
    steps.process(state, keyed(request(title="A social thing", category="social", priority="low")), NOW)
    steps.process(state, keyed(request(title="A CI thing", category="ci", priority="low")), NOW)
    opted_out = [user_state_item(topic, record) for topic, record in user_records(
        "alice", email=EMAIL, digest=digest_settings("daily", "18:00"),
        categories={"social": category_settings(enabled=False)})]
    steps.process(state, opted_out, NOW + timedelta(hours=1))
    [digest] = steps.release(state, datetime(2024, 5, 17, 18, 0, tzinfo=UTC))
    assert [entry["title"] for entry in digest["digest_items"]] == ["A CI thing"]
    assert digest["rendered"]["title"] == "1 notifications you may have missed"
    assert "social" not in digest["rendered"]["body"]


def test_hourly_email_holds_only_the_email_part_and_sends_one_email_digest_at_the_hour():
    steps, state = steps_for(channels={"email": channel_settings(frequency="hourly")})
    offline = [user_state_item(topic, record) for topic, record in user_records(
        "alice", devices=[device(device_id="laptop", token=None)], email=EMAIL,
        channels={"email": channel_settings(frequency="hourly")}, online=False)]
    steps = per_user_steps(sample_catalog())
    state = steps.new_state()
    steps.process(state, offline, NOW)
    out = []
    for n in range(3):
        out += steps.process(state, keyed(request(title=f"Build {n}", category="ci", priority="high")), NOW)
    assert sent(out) == [("job", "in_app"), ("requested", "in_app"), ("job", "email"), ("requested", "email")] * 3
    low = []
    for n in range(3):
        low += steps.process(state, keyed(request(title=f"Note {n}", category="ci")), NOW)
    assert sent(low) == [("digested", "email"), ("job", "in_app"), ("requested", "in_app")] * 3
    [digest] = [item for item in steps.release(state, datetime(2024, 5, 17, 13, 0, tzinfo=UTC))
                if item.get("digest_items")]
    assert digest["route"]["send"] == ["email"]
    assert [entry["title"] for entry in digest["digest_items"]] == ["Note 0", "Note 1", "Note 2"]


def test_an_unsubscribe_turns_off_that_categorys_email_keeping_everything_else():
    steps, state = steps_for(locale="fr", quiet_hours=quiet_hours("22:00", "07:00"),
                             categories={"ci": category_settings(priority_override="high")})
    [published] = steps.process(state, [engagement("n-9", "unsubscribed", channel="email", category="social")], NOW)
    topic, key, record = outgoing(published, NOW)[0]
    assert (topic, key) == (PREFERENCES, b"alice")
    assert record["categories"]["social"]["channels"] == ["push", "sms", "webhook", "in_app"]
    assert record["categories"]["ci"]["priority_override"] == "high"
    assert (record["locale"], record["quiet_hours"]["start_time"], record["email"]) == ("fr", "22:00", EMAIL)
    [social] = steps.process(state, keyed(request(category="social", priority="high")), NOW)
    assert "email" not in social["channels"] and "email" not in social["route"]["send"]
    [ci] = steps.process(state, keyed(request(category="ci", priority="high", title="other")), NOW)
    assert "email" in ci["channels"]


def test_an_unsubscribe_from_a_consent_category_withdraws_consent():
    steps, state = steps_for(marketing_consent=True)
    [published] = steps.process(state, [engagement("n-9", "unsubscribed", channel="email",
                                                   category="marketing")], NOW)
    assert outgoing(published, NOW)[0][2]["marketing_consent"] is False
    [sale] = steps.process(state, keyed(request(category="marketing", type="marketing", priority="low")), NOW)
    assert (sale["outcome"], sale["reason"]) == ("dropped", "no marketing consent")
