"""The notification flow, run with `python -m bytewax.run` against the real broker and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from flows.render import catalog_from_env
from kernel.topics import codec_for
from notifyflow.processes import FlowProcess

from flow_harness import Outputs, device, jobs, preferences, publish, publish_raw, request, statuses, unique


@pytest.fixture(scope="module")
def flow(stack, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("notifications")
    with FlowProcess("notifications", workdir / "recovery", workdir / "flow.log") as running:
        yield running


@pytest.fixture
def outputs(flow):
    reader = Outputs(flow)
    yield reader
    reader.close()


def count(n):
    return lambda found: len(found) >= n


def test_routing_lanes_and_fallback_chain(outputs):
    user = unique("ana")
    publish("notify.preferences", [preferences(user, email=f"{user}@example.com", marketing_consent=True)])
    publish("notify.devices", [device(user, "phone-1", "fcm-token-1")])
    outputs.settle()
    publish("notify.events", [
        request(user, "Bob sent you a message", "Lunch?", category="messages"),
        request(user, "New sign-in from Lisbon", "Was this you?", category="security", priority="critical"),
        request(user, "Winter sale", "20% off", category="marketing", type="marketing", priority="low",
                metadata={"campaign_id": "winter-26"}),
    ])
    found = outputs.wait_for({user}, lambda f: len(jobs(f)) >= 6)
    by_topic = {}
    for topic, job in jobs(found):
        by_topic.setdefault(job["title"], []).append(topic)
    # Offline user, normal priority: the center plus the best interruptive channel now, email if unseen.
    assert sorted(by_topic["Bob sent you a message"]) == ["notify.outbox.in_app.normal", "notify.outbox.push.normal"]
    push = next(j for t, j in jobs(found) if t == "notify.outbox.push.normal")
    assert push["devices"] == [{"device_id": "phone-1", "platform": "android", "token": "fcm-token-1",
                                "web_push": None}]
    assert push["fallback"] == [{"channel": "email", "after_seconds": 300, "address": f"{user}@example.com"}]
    assert push["collapse_key"] == push["notification_id"] and push["job_id"].endswith(":push:0")
    # Critical: every channel that can reach the user, at once, on the critical lane.
    assert sorted(by_topic["New sign-in from Lisbon"]) == [
        "notify.outbox.email.critical", "notify.outbox.in_app.critical", "notify.outbox.push.critical"]
    email = next(j for t, j in jobs(found) if t == "notify.outbox.email.critical")
    assert email["address"] == f"{user}@example.com" and email["fallback"] == []
    # A low-priority campaign: history only, on the bulk lane.
    assert by_topic["Winter sale"] == ["notify.outbox.in_app.bulk"]
    requested = [s for s in statuses(found) if s["status"] == "requested"]
    assert sorted(s["channel"] for s in requested) == ["email", "in_app", "in_app", "in_app", "push", "push"]


def test_duplicates_within_five_minutes_merge_into_one_notification(outputs):
    user = unique("ben")
    publish("notify.events", [request(user, "Bob sent you a message", "Ping", category="messages")
                              for _ in range(3)])
    found = outputs.wait_for({user}, lambda f: len(jobs(f)) >= 3)
    sent = [job for _, job in jobs(found)]
    assert [job["revision"] for job in sent] == [0, 1, 2]
    assert len({job["notification_id"] for job in sent}) == 1
    assert [job["kind"] for job in sent] == ["single", "update", "update"]
    assert sent[-1]["body"] == "3 new messages"
    assert sent[-1]["merge"] == {"strategy": "count", "count": 3, "items": ["Ping", "Ping", "Ping"]}
    assert [s["status"] for s in statuses(found)] == ["requested", "merged", "merged"]


def test_bad_input_goes_to_the_dead_letter_topic_with_its_bytes(outputs):
    user = unique("cy")
    hostile = request(user, "Click me", metadata={"deep_link": "javascript:alert(1)"})
    hostile_bytes = codec_for("notify.events").encode(hostile)
    publish_raw("notify.events", user.encode(), hostile_bytes)
    publish_raw("notify.events", user.encode(), b"\x00not avro at all")
    publish("notify.events", [request(user, "Too late", metadata={
        "created_at": datetime.now(UTC) - timedelta(hours=2), "expires_at": datetime.now(UTC) - timedelta(hours=1)})])
    found = outputs.wait_for({user}, count(3))
    dead = {v["stage"]: v for t, v in found if t == "notify.dlq"}
    assert dead["validate"]["original"] == hostile_bytes
    assert dead["validate"]["reason"] == "metadata.deep_link: scheme 'javascript' is not allowed"
    assert dead["validate"]["topic"] == "notify.events" and dead["validate"]["attempts"] == 1
    assert dead["decode"]["original"] == b"\x00not avro at all"
    assert [(s["status"], s["reason"].split(" at ")[0]) for s in statuses(found)] == [("expired", "expired")]
    assert jobs(found) == []


def test_a_request_whose_tenant_is_no_tenant_name_is_dead_lettered_with_the_reason(outputs):
    user = unique("fay")
    for tenant in ("acme:b", "acme b"):  # "acme:b"'s user would share a key with acme's user "b:<id>"
        publish_raw("notify.events", user.encode(), codec_for("notify.events").encode(
            request(user, "Hello", tenant=tenant)))
    found = outputs.wait_for({user}, count(2))
    assert sorted((v["stage"], v["reason"]) for t, v in found if t == "notify.dlq") == [
        ("validate", f"tenant {tenant!r} must be letters, digits, '.', '_' and '-', starting with a letter or digit "
                     "(':' separates tenant and user in keys)") for tenant in ("acme b", "acme:b")]
    assert jobs(found) == []


def test_preferences_consent_and_critical_bypass(outputs):
    muted, no_consent = unique("dee"), unique("eve")
    publish("notify.preferences", [preferences(muted, enabled=False), preferences(no_consent)])
    outputs.settle()
    publish("notify.events", [
        request(muted, "Weekly tips"),
        request(muted, "Password changed", category="security", priority="critical"),
        request(no_consent, "Big news", category="marketing", type="marketing", priority="critical"),
    ])
    found = outputs.wait_for({muted, no_consent}, count(3))
    assert [(t, j["title"]) for t, j in jobs(found)] == [("notify.outbox.in_app.critical", "Password changed")]
    dropped = {s["user_id"]: s["reason"] for s in statuses(found) if s["status"] == "dropped"}
    assert dropped == {muted: "notifications are turned off", no_consent: "no marketing consent"}


def test_quiet_hours_defer_all_but_critical(outputs):
    user = unique("fay")
    local = datetime.now(ZoneInfo("Asia/Tokyo"))
    quiet = {"start_time": (local - timedelta(hours=1)).strftime("%H:%M"),
             "end_time": (local + timedelta(hours=1)).strftime("%H:%M"), "timezone": "Asia/Tokyo", "days": []}
    publish("notify.preferences", [preferences(user, quiet_hours=quiet)])
    outputs.settle()
    publish("notify.events", [request(user, "Standup notes"),
                              request(user, "Server down", category="ops", priority="critical")])
    # The job and the statuses are on different topics: nothing orders them, so wait for both.
    found = outputs.wait_for({user}, lambda f: jobs(f) and any(s["status"] == "deferred" for s in statuses(f)))
    assert [j["title"] for _, j in jobs(found)] == ["Server down"]
    deferred = [s for s in statuses(found) if s["status"] == "deferred"]
    assert len(deferred) == 1 and deferred[0]["reason"].startswith("held until ")
    held_until = datetime.fromisoformat(deferred[0]["reason"].removeprefix("held until "))
    assert timedelta(minutes=55) < held_until - datetime.now(UTC) <= timedelta(minutes=61)


def test_segment_audience_fans_out_one_job_per_member(stack, outputs):
    members = [unique("gus"), unique("hal"), unique("ida")]
    segment = unique("beta")
    with psycopg.connect(stack.urls["DATABASE_URL"], autocommit=True) as db:
        db.cursor().executemany("INSERT INTO audience_members (audience, user_id) VALUES (%s, %s)",
                       [(f"segment:{segment}", user) for user in members])
    fan_out = request(None, "Beta is live", audience={"user_ids": [members[0]], "segment": segment, "topic": None})
    publish_raw("notify.events", fan_out["id"].encode(), codec_for("notify.events").encode(fan_out))
    found = outputs.wait_for(set(members), lambda f: len(jobs(f)) >= 3)
    assert sorted(j["user_id"] for _, j in jobs(found)) == sorted(members)
    assert {j["notification_id"] for _, j in jobs(found)} == {fan_out["id"]}


def test_template_locale_and_ab_variant_are_recorded_on_the_job(outputs):
    users = [unique("jo") for _ in range(6)]
    publish("notify.preferences", [preferences(user, locale="fr-CA") for user in users[:3]])
    outputs.settle()
    sent = [request(user, "Your week", "5 new replies", template_id="weekly_digest_promo",
                    metadata={"campaign_id": "promo-7"}, template_vars={"product": "Notifyflow"}) for user in users]
    publish("notify.events", sent)
    found = outputs.wait_for(set(users), lambda f: len(jobs(f)) >= 6)
    catalog = catalog_from_env()
    for topic, job in jobs(found):
        expected = catalog.render(next(r for r in sent if r["user_id"] == job["user_id"]), job["user_id"], None)
        assert (job["variant"], job["title"], job["template_id"]) == (
            expected["variant"], expected["title"], "weekly_digest_promo")
        assert topic == "notify.outbox.in_app.bulk"
        assert job["locale"] == "en"  # fr-CA and fr have no variant text: the English fallback
    assert {j["variant"] for _, j in jobs(found)} <= {"A", "B"}


def test_a_template_that_cannot_render_is_dead_lettered(outputs):
    catalog = catalog_from_env()
    while True:  # a user in variant A, whose title needs the `product` variable this request lacks
        user = unique("max")
        broken = request(user, "Your week", template_id="weekly_digest_promo", metadata={"campaign_id": "promo-7"})
        if catalog.render({**broken, "template_vars": {"product": "x"}}, user, None)["variant"] == "A":
            break
    publish("notify.events", [broken])
    found = outputs.wait_for({user}, count(1))
    assert found[0][0] == "notify.dlq" and found[0][1]["stage"] == "render"
    assert found[0][1]["original"] == codec_for("notify.events").encode(broken)
    assert "is undefined" in found[0][1]["reason"]


def test_frequency_caps_drop_marketing_excess(outputs):
    user = unique("kim")
    publish("notify.preferences", [preferences(user, marketing_consent=True)])
    outputs.settle()
    publish("notify.events", [request(user, f"Offer {n}", category="marketing", priority="normal") for n in range(3)])
    found = outputs.wait_for({user}, count(3))
    assert [j["title"] for _, j in jobs(found)] == ["Offer 0", "Offer 1"]
    limited = [s for s in statuses(found) if s["status"] == "rate_limited"]
    assert [s["reason"] for s in limited] == ["marketing cap of 2 per day reached"]


def test_one_users_notifications_keep_their_order(outputs):
    user = unique("lou")
    publish("notify.preferences", [preferences(user, categories={
        "tips": {"enabled": False, "channels": [], "priority_override": None}})])
    outputs.settle()
    sent = [request(user, f"Message {n:02d}", category="tips" if n % 3 == 0 else "messages") for n in range(40)]
    publish("notify.events", sent)
    found = outputs.wait_for({user}, lambda f: len(statuses(f)) >= 40)
    # Jobs and statuses alike come out in the order the user's requests went in.
    assert [s["notification_id"] for s in statuses(found)] == [r["id"] for r in sent]
    assert [s["status"] for s in statuses(found)] == [
        "dropped" if r["category"] == "tips" else "requested" for r in sent]
    assert [j["title"] for _, j in jobs(found)] == [r["content"]["title"] for r in sent if r["category"] != "tips"]


def test_a_digest_window_collects_notifications_and_sends_one_digest(outputs):
    user = unique("nia")
    # An hourly digest at the coming minute, so the window closes within the test.
    closes = (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if closes - datetime.now(UTC) < timedelta(seconds=15):
        closes += timedelta(minutes=1)
    digest = {"enabled": True, "frequency": "hourly", "time": closes.strftime("00:%M"), "timezone": "UTC"}
    publish("notify.preferences", [preferences(user, email=f"{user}@example.com", digest=digest)])
    outputs.settle()
    publish("notify.events", [request(user, "Ana liked your post", category="social", priority="low"),
                              request(user, "Build #7 passed", category="ci"),
                              request(user, "Password changed", category="security")])
    found = outputs.wait_for({user}, lambda f: any(j["kind"] == "digest" for _, j in jobs(f)), timeout_s=150)
    # Security is never digested; the other two wait for the window and leave as one email.
    assert [(s["status"], s["category"]) for s in statuses(found)][:4] == [
        ("digested", "social"), ("digested", "ci"), ("requested", "security"), ("requested", "security")]
    [(topic, sent)] = [(t, j) for t, j in jobs(found) if j["kind"] == "digest"]
    assert topic == "notify.outbox.email.bulk" and sent["address"] == f"{user}@example.com"
    assert [(i["title"], i["category"]) for i in sent["digest_items"]] == [
        ("Ana liked your post", "social"), ("Build #7 passed", "ci")]
    assert sent["title"] == "2 notifications you may have missed"
    assert sent["notification_id"] == f"digest:{user}:{closes.strftime('%Y%m%dT%H%M')}"
    assert datetime.now(UTC) >= closes


def test_replace_and_accumulate_merges_and_html_is_sanitised(outputs):
    user = unique("oli")
    xss = '<img src=x onerror="alert(1)">'
    publish("notify.events", [request(user, "Build #9", "running", category="ci"),
                              request(user, "Build #9", "running", category="ci", priority="high"),
                              request(user, "Ana replied", xss, category="social"),
                              request(user, "Ana replied", xss, category="social")])
    found = outputs.wait_for({user}, lambda f: len(jobs(f)) >= 4)
    # Different lanes (normal, then high) are different topics: order by revision, as sinks do.
    ci = sorted((j for _, j in jobs(found) if j["category"] == "ci"), key=lambda j: j["revision"])
    assert [(j["revision"], j["merge"] and j["merge"]["strategy"]) for j in ci] == [(0, None), (1, "replace")]
    assert ci[1]["priority"] == "high" and ci[1]["notification_id"] == ci[0]["notification_id"]
    social = sorted((j for _, j in jobs(found) if j["category"] == "social"), key=lambda j: j["revision"])
    assert social[1]["merge"] == {"strategy": "accumulate", "count": 2, "items": [xss, xss]}
    assert social[1]["body"] == f"{xss}\n{xss}"  # text channels get the text as written
    for job in social:
        assert "<img" not in job["html_body"] and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in job["html_body"]
