"""flows/quiet_hours.py, flows/rate_limit.py and flows/digest.py: the steps that hold, cap and collect."""

from datetime import UTC, datetime, timedelta

import pytest

from flow_items import (NOW, Pipeline, category_settings, channel_settings, device, digest_settings, item_at,
                        quiet_hours, request)
from flows.digest import Digest, schedule_for, waits_for_digest
from flows.quiet_hours import QuietHours, hold_until
from flows.rate_limit import RateLimit, over_cap
from schemas.writer import millis

# NOW is Friday 2024-05-17 12:00 UTC: 21:00 in Tokyo (UTC+9), 13:00 in Lisbon (UTC+1).
TOKYO_NIGHT = quiet_hours("21:00", "07:00", "Asia/Tokyo")  # now quiet, until 22:00 UTC
TOKYO_LATE = quiet_hours("23:00", "07:00", "Asia/Tokyo")  # 14:00-22:00 UTC, not quiet now


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def created(minutes: float, **fields) -> dict:
    """A request created `minutes` after NOW, its body unique unless given (so nothing merges)."""
    metadata = {"created_at": NOW + timedelta(minutes=minutes), **fields.pop("metadata", {})}
    fields.setdefault("body", f"event at {minutes} min")
    return request(metadata=metadata, **fields)


def feed(pipeline: Pipeline, *requests) -> list[dict]:
    """Each request as its own batch, arriving when it was created."""
    return [item for req in requests for item in pipeline.run(req, now=req["metadata"]["created_at"])]


# --- quiet hours ------------------------------------------------------------------------------


def test_inside_quiet_hours_the_item_is_deferred_and_released_when_the_window_ends():
    pipeline = Pipeline().user(devices=[device()], quiet_hours=TOKYO_NIGHT)
    req = request(title="Your build passed")
    (deferred,) = pipeline.run(req)
    assert deferred["outcome"] == "deferred"
    assert deferred["reason"] == "held until 2024-05-17T22:00:00+00:00"
    assert deferred["notification_id"] == req["id"]
    assert pipeline.due("quiet_hours") == utc(2024, 5, 17, 22)

    assert pipeline.release(utc(2024, 5, 17, 21, 59, 59)) == []
    (released,) = pipeline.release(utc(2024, 5, 17, 22))
    assert "outcome" not in released
    assert released["request"]["id"] == req["id"]
    assert released["rendered"]["title"] == "Your build passed"  # went on through the rest of the flow
    assert released["route"] == {"send": ["in_app", "push"], "fallback": []}
    assert pipeline.due("quiet_hours") is None
    assert pipeline.release(utc(2024, 5, 18)) == []


def test_release_after_the_due_time_also_hands_the_item_on():
    pipeline = Pipeline(until="quiet_hours").user(quiet_hours=TOKYO_NIGHT)
    pipeline.run(request())
    assert len(pipeline.release(utc(2024, 5, 18, 3))) == 1


def test_critical_is_never_held_by_quiet_hours():
    pipeline = Pipeline(until="quiet_hours").user(quiet_hours=TOKYO_NIGHT)
    (item,) = pipeline.run(request(priority="critical", category="security"))
    assert "outcome" not in item
    assert pipeline.due("quiet_hours") is None


def test_user_raised_to_critical_passes_quiet_hours_too():
    pipeline = Pipeline(until="quiet_hours").user(
        quiet_hours=TOKYO_NIGHT, categories={"security": category_settings(priority_override="critical")})
    (item,) = pipeline.run(request(category="security"))
    assert "outcome" not in item and item["priority"] == "critical"


def test_outside_quiet_hours_nothing_waits():
    pipeline = Pipeline(until="quiet_hours").user(quiet_hours=TOKYO_LATE)
    assert "outcome" not in pipeline.run(request())[0]
    # Quiet only on weekends: Friday noon passes.
    pipeline = Pipeline(until="quiet_hours").user(quiet_hours=quiet_hours("00:00", "23:59", days=["sat", "sun"]))
    assert "outcome" not in pipeline.run(request())[0]


def test_scheduled_send_is_held_until_scheduled_at_even_when_critical():
    pipeline = Pipeline(until="quiet_hours")
    at = NOW + timedelta(hours=2)
    normal, critical = request(scheduled_at=at), request(scheduled_at=at, priority="critical", title="Other")
    out = pipeline.run(normal, critical)
    assert [(i["outcome"], i["reason"]) for i in out] == [("deferred", "held until 2024-05-17T14:00:00+00:00")] * 2
    assert pipeline.due("quiet_hours") == at
    assert pipeline.release(at - timedelta(seconds=1)) == []
    assert [i["request"]["id"] for i in pipeline.release(at)] == [normal["id"], critical["id"]]


def test_scheduled_at_in_the_past_is_not_held():
    pipeline = Pipeline(until="quiet_hours")
    assert "outcome" not in pipeline.run(request(scheduled_at=NOW - timedelta(minutes=1)))[0]


def test_a_scheduled_send_that_comes_due_in_quiet_hours_waits_for_the_window_to_end():
    pipeline = Pipeline(until="quiet_hours").user(quiet_hours=TOKYO_LATE)
    req = request(scheduled_at=utc(2024, 5, 17, 15))  # midnight in Tokyo
    assert pipeline.run(req)[0]["reason"] == "held until 2024-05-17T15:00:00+00:00"
    assert pipeline.release(utc(2024, 5, 17, 15)) == []  # held again
    assert pipeline.due("quiet_hours") == utc(2024, 5, 17, 22)
    (released,) = pipeline.release(utc(2024, 5, 17, 22))
    assert released["request"]["id"] == req["id"]


def test_release_hands_items_on_in_due_order():
    pipeline = Pipeline(until="quiet_hours")
    late, early = request(scheduled_at=NOW + timedelta(hours=3)), request(scheduled_at=NOW + timedelta(hours=1))
    pipeline.run(late, early)
    assert pipeline.due("quiet_hours") == NOW + timedelta(hours=1)
    assert [i["request"]["id"] for i in pipeline.release(NOW + timedelta(hours=5))] == [early["id"], late["id"]]


@pytest.mark.parametrize("settings", [
    quiet_hours("21:00", "07:00", "Mars/Olympus_Mons"),
    quiet_hours("9pm", "7am", "Asia/Tokyo"),
])
def test_unusable_quiet_hours_do_not_silence_the_user(settings):
    pipeline = Pipeline(until="quiet_hours").user(quiet_hours=settings)
    assert "outcome" not in pipeline.run(request())[0]


def test_quiet_hours_state():
    step = QuietHours()
    state = step.new_state()
    assert step.is_empty(state) and step.due(state) is None
    items = Pipeline(until="apply_preferences").user(quiet_hours=TOKYO_NIGHT).run(request())
    step.process(state, items, NOW)
    assert not step.is_empty(state)
    assert hold_until(items[0], NOW) == utc(2024, 5, 17, 22)
    step.release(state, utc(2024, 5, 17, 22))
    assert step.is_empty(state)


# --- rate limits ------------------------------------------------------------------------------


def limited(item):
    return item.get("outcome"), item.get("reason"), item.get("to_digest")


def test_category_cap_per_hour_sends_the_excess_to_the_digest():
    pipeline = Pipeline(until="rate_limit")
    out = feed(pipeline, *(created(i, category="social") for i in range(21)))
    assert [limited(i) for i in out[:20]] == [(None, None, None)] * 20
    assert limited(out[20]) == (None, None, "social cap of 20 per hour reached")
    # The excess is not counted as sent.
    assert len(pipeline.state("rate_limit")["sent"]) == 20


def test_other_categories_have_their_own_caps():
    pipeline = Pipeline(until="rate_limit")
    feed(pipeline, *(created(i, category="social") for i in range(20)))
    assert limited(feed(pipeline, created(21, category="ci"))[0]) == (None, None, None)


def test_user_cap_across_categories():
    pipeline = Pipeline(until="rate_limit")
    reqs = [created(i / 2, category=("general", "ci")[i % 2]) for i in range(60)]
    assert all(limited(i) == (None, None, None) for i in feed(pipeline, *reqs))
    (excess,) = feed(pipeline, created(31, category="messages"))
    assert limited(excess) == (None, None, "user cap of 60 per hour reached")


def test_marketing_excess_is_dropped_per_day():
    pipeline = Pipeline(until="rate_limit").user(marketing_consent=True)
    mails = [created(h * 60, category="marketing", type="marketing", priority="low") for h in (0, 5, 10, 23)]
    out = feed(pipeline, *mails)
    assert [limited(i) for i in out] == [(None, None, None)] * 2 + [
        ("rate_limited", "marketing cap of 2 per day reached", None)] * 2
    # A day after the first, one slot is free again; the day slides with created_at.
    (next_day,) = feed(pipeline, created(24 * 60, category="marketing", type="marketing", priority="low"))
    assert limited(next_day) == (None, None, None)


def test_window_slides_by_created_at():
    pipeline = Pipeline(until="rate_limit")
    feed(pipeline, *(created(i, category="social") for i in range(20)))
    assert limited(feed(pipeline, created(59.9, category="social"))[0])[2] == "social cap of 20 per hour reached"
    # An hour after the first, it has left the window.
    assert limited(feed(pipeline, created(60, category="social"))[0]) == (None, None, None)


def test_decisions_do_not_depend_on_the_wall_clock():
    reqs = [created(i, category="social") for i in range(21)]
    on_time = [limited(i) for i in feed(Pipeline(until="rate_limit"), *reqs)]
    late = [limited(i) for i in Pipeline(until="rate_limit").run(*reqs, now=NOW + timedelta(hours=3))]
    assert late == on_time


def test_critical_is_never_capped_nor_counted():
    pipeline = Pipeline(until="rate_limit")
    feed(pipeline, *(created(i, category="social") for i in range(20)))
    (alert,) = feed(pipeline, created(21, category="social", priority="critical"))
    assert limited(alert) == (None, None, None)
    assert len(pipeline.state("rate_limit")["sent"]) == 20


def test_updates_to_an_existing_notification_are_never_capped():
    pipeline = Pipeline(until="rate_limit")
    feed(pipeline, *(created(i / 10, category="social") for i in range(20)))
    (update,) = feed(pipeline, created(1, category="social", body="event at 0.0 min"))  # merges with the first
    assert update["revision"] == 1
    assert limited(update) == (None, None, None)


def test_finished_items_pass_the_rate_limit():
    step = RateLimit()
    state = step.new_state()
    done = [{"outcome": "dropped", "reason": "x"}]
    assert step.process(state, done, NOW) == done
    assert step.is_empty(state)


def test_over_cap_directly():
    now = millis(NOW)
    sent = [(millis(NOW - timedelta(minutes=m)), "marketing") for m in (10, 20)]
    assert over_cap(sent, now, "marketing") == "marketing cap of 2 per day reached"
    assert over_cap(sent, now, "general") is None
    assert over_cap([(now, "general")] * 30, now, "general") == "general cap of 30 per hour reached"


def test_a_window_snapshotted_with_datetimes_is_resumed():
    # States pickled before the window held epoch milliseconds hold datetimes; a resumed flow reads them.
    step, state = RateLimit(), {"sent": [(NOW - timedelta(minutes=m), "general") for m in range(60)]}
    (capped,) = step.process(state, [item_at("select_channels", request(category="general"))], NOW)
    assert "user cap of 60 per hour reached" in (capped.get("reason") or capped.get("to_digest"))
    assert state["sent"] == [(millis(NOW - timedelta(minutes=m)), "general") for m in range(60)]


# --- digest -----------------------------------------------------------------------------------

DAILY = digest_settings("daily", "09:00", "UTC")
DIGEST_DUE = utc(2024, 5, 18, 9)


def digest_user(pipeline: Pipeline, **prefs) -> Pipeline:
    return pipeline.user(devices=[device()], **{"email": "alice@example.com", "digest": DAILY, **prefs})


def test_low_and_normal_items_wait_for_the_users_digest():
    pipeline = digest_user(Pipeline())
    reqs = [created(0, title="Ana commented", body="Nice!", category="social", priority="low"),
            created(1, title="Build #7 passed", body="", category="ci")]
    out = feed(pipeline, *reqs)
    assert [(i["outcome"], i["reason"]) for i in out] == [("digested", "daily digest")] * 2
    assert pipeline.due("digest") == DIGEST_DUE
    assert pipeline.release(DIGEST_DUE - timedelta(seconds=1)) == []

    (digest,) = pipeline.release(DIGEST_DUE)
    assert digest["notification_id"] == "digest:alice:20240518T0900"
    assert digest["digest_items"] == [
        {"notification_id": reqs[0]["id"], "category": "social", "title": "Ana commented", "body": "Nice!",
         "created_at": NOW},
        {"notification_id": reqs[1]["id"], "category": "ci", "title": "Build #7 passed", "body": "",
         "created_at": NOW + timedelta(minutes=1)},
    ]
    assert digest["rendered"]["title"] == "2 notifications you may have missed"
    assert digest["rendered"]["body"] == "• Ana commented: Nice!\n• Build #7 passed"
    assert digest["rendered"]["html_body"] == (
        "<ul><li><strong>Ana commented</strong> Nice!</li><li><strong>Build #7 passed</strong> </li></ul>")
    assert digest["route"] == {"send": ["email"], "fallback": []}
    assert (digest["priority"], digest["revision"], digest["merge"], digest["to_digest"]) == ("low", 0, None, None)
    request_ = digest["request"]
    assert (request_["id"], request_["category"], request_["type"], request_["priority"]) == (
        "digest:alice:20240518T0900", "digest", "info", "low")
    assert request_["metadata"]["created_at"] == DIGEST_DUE and request_["metadata"]["expires_at"] is None
    # Released once; the state starts over.
    assert pipeline.due("digest") is None
    assert pipeline.release(DIGEST_DUE + timedelta(days=1)) == []
    assert Digest().is_empty(pipeline.state("digest"))


def test_digest_goes_in_app_without_an_email_address_or_when_email_is_not_allowed():
    pipeline = digest_user(Pipeline(), email=None)
    feed(pipeline, created(0))
    assert pipeline.release(DIGEST_DUE)[0]["route"] == {"send": ["in_app"], "fallback": []}
    pipeline = digest_user(Pipeline(), channels={"email": channel_settings(enabled=False)})
    feed(pipeline, created(0))
    assert pipeline.release(DIGEST_DUE)[0]["route"] == {"send": ["in_app"], "fallback": []}


def test_digest_html_is_escaped():
    pipeline = digest_user(Pipeline())
    feed(pipeline, created(0, title="<script>x</script>", body="a & b"))
    (digest,) = pipeline.release(DIGEST_DUE)
    assert digest["rendered"]["html_body"] == \
        "<ul><li><strong>&lt;script&gt;x&lt;/script&gt;</strong> a &amp; b</li></ul>"
    assert digest["rendered"]["body"] == "• <script>x</script>: a & b"


def test_digest_keeps_the_latest_fifty_entries():
    pipeline = digest_user(Pipeline())
    feed(pipeline, *(created(i / 10, title=f"n{i}") for i in range(55)))
    (digest,) = pipeline.release(DIGEST_DUE)
    assert [e["title"] for e in digest["digest_items"]] == [f"n{i}" for i in range(5, 55)]
    assert digest["rendered"]["title"] == "50 notifications you may have missed"


@pytest.mark.parametrize(("req", "why"), [
    (created(0, priority="high"), "high priority"),
    (created(0, priority="critical"), "critical"),
    (created(0, category="security"), "security is not digestible"),
    (created(0, category="billing", priority="low"), "billing is not digestible"),
])
def test_what_is_not_digested(req, why):
    pipeline = digest_user(Pipeline())
    (item,) = feed(pipeline, req)
    assert "outcome" not in item, why
    assert pipeline.due("digest") is None


def test_merge_updates_are_not_digested():
    pipeline = digest_user(Pipeline())
    first, update = feed(pipeline, created(0, body="same"), created(1, body="same"))
    assert first["outcome"] == "digested"
    assert "outcome" not in update and update["revision"] == 1


def test_disabled_digest_schedule_digests_nothing():
    pipeline = digest_user(Pipeline(), digest=digest_settings(enabled=False))
    assert "outcome" not in feed(pipeline, created(0))[0]


def test_rate_limited_excess_joins_an_hourly_digest():
    pipeline = Pipeline().user(devices=[device()])
    out = feed(pipeline, *(created(i, category="social", priority="low") for i in range(22)))
    assert [i.get("outcome") for i in out] == [None] * 20 + ["digested"] * 2
    assert out[20]["reason"] == "social cap of 20 per hour reached"
    # The first entry was created at 12:20 UTC: the next full hour.
    assert pipeline.due("digest") == utc(2024, 5, 17, 13)
    (digest,) = pipeline.release(utc(2024, 5, 17, 13))
    assert [e["notification_id"] for e in digest["digest_items"]] == [out[20]["notification_id"],
                                                                      out[21]["notification_id"]]
    assert digest["route"] == {"send": ["in_app"], "fallback": []}
    assert digest["notification_id"] == "digest:alice:20240517T1300"


def test_hourly_digest_runs_on_the_users_local_hour():
    # Kolkata is UTC+5:30: the local hour starts at half past in UTC.
    pipeline = Pipeline().user(timezone="Asia/Kolkata")
    feed(pipeline, *(created(i, category="social") for i in range(21)))
    assert pipeline.due("digest") == utc(2024, 5, 17, 12, 30)


def test_unusable_digest_schedule_falls_back_to_hourly_utc():
    pipeline = digest_user(Pipeline(), digest=digest_settings("daily", "25:00", "UTC"))
    assert feed(pipeline, created(0))[0]["outcome"] == "digested"
    assert pipeline.due("digest") == utc(2024, 5, 17, 13)


def test_schedule_for():
    prefs = {"digest": None, "timezone": "Europe/Lisbon"}
    assert schedule_for(prefs) == {"enabled": True, "frequency": "hourly", "time": "00:00",
                                   "timezone": "Europe/Lisbon"}
    assert schedule_for({**prefs, "digest": DAILY}) == DAILY
    assert schedule_for({**prefs, "digest": digest_settings(enabled=False)})["frequency"] == "hourly"


def test_waits_for_digest_reason():
    item = Pipeline(until="rate_limit").user(digest=digest_settings("weekly")).run(created(0))[0]
    assert waits_for_digest(item) == "weekly digest"
    assert waits_for_digest({**item, "to_digest": "social cap of 20 per hour reached"}) == \
        "social cap of 20 per hour reached"
    assert waits_for_digest({**item, "revision": 2}) is None


def test_an_item_that_expires_while_held_is_not_sent():
    pipeline = Pipeline(until="quiet_hours")
    at = NOW + timedelta(hours=2)
    expiring = request(scheduled_at=at, metadata={"expires_at": NOW + timedelta(hours=1)})
    pipeline.run(expiring)
    assert [(i["outcome"], i["reason"]) for i in pipeline.release(at)] == [("expired", "expired while held")]


def test_a_digest_carries_none_of_the_last_items_links_and_media():
    pipeline = digest_user(Pipeline())
    feed(pipeline, created(0, content={"image_url": "https://cdn.example.com/a.png"},
                           metadata={"deep_link": "https://app.example.com/a", "payload": {"k": "v"}}))
    digest = pipeline.release(DIGEST_DUE)[0]
    assert digest["request"]["content"]["image_url"] is None
    assert digest["request"]["metadata"]["deep_link"] is None and digest["request"]["metadata"]["payload"] == {}


def test_a_digest_with_neither_email_nor_in_app_allowed_is_dropped():
    pipeline = digest_user(Pipeline(), channels={"email": channel_settings(enabled=False),
                                                 "in_app": channel_settings(enabled=False)})
    feed(pipeline, created(0))
    [dropped] = pipeline.release(DIGEST_DUE)
    assert (dropped["outcome"], dropped["reason"]) == ("dropped", "no channel for the digest of 1 notifications")
