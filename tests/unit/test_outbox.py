"""flows/render.py (the render step) and flows/outbox.py (jobs, statuses and dead letters), with every
record the end of the flow produces encoded by the real codec of its topic."""

import functools
from datetime import UTC, datetime, timedelta

import pytest

from flows import outbox
from flows.outbox import lane_for, outgoing
from flows.render import render
from flows.templates import TemplateCatalog
from kernel.keyed import Each
from kernel.topics import CHANNELS, LANES, codec_for, outbox_topic

from flow_items import (NOW, Pipeline, action, channel_settings, device, digest_settings, encode, fan_out, item_at,
                        quiet_hours, records_of, request, web_push_subscription)

LATER = NOW + timedelta(seconds=2)  # when the outbox step runs

BROKEN = TemplateCatalog({
    "needs_name": {"variants": {"A": {"weight": 1, "locales": {"en": {"title": "Hi {{ name }}", "body": "x"}}}}},
})


def roundtrip(topic, record):
    codec = codec_for(topic)
    return codec.decode(codec.encode(record))


# --- render -----------------------------------------------------------------------------------


def test_render_attaches_the_rendered_content():
    item = item_at("render_template", request(title="Deploy <ok>", body="a <b> & c\nline 2"))
    assert item["rendered"] == {"title": "Deploy <ok>", "body": "a <b> & c\nline 2",
                                "html_body": "a &lt;b&gt; &amp; c<br>line 2", "locale": "en",
                                "variant": None, "template_id": None}


def test_render_uses_the_template_and_the_users_locale():
    req = request(title="", body="", template_id="welcome", template_vars={"name": "Ana", "product": "Acme"},
                  locale="en")
    item = item_at("render_template", req, locale="fr")
    assert item["rendered"]["title"] == "Bienvenue sur Acme, Ana !"
    assert item["rendered"]["locale"] == "fr"
    assert item["rendered"]["template_id"] == "welcome" and item["rendered"]["variant"] == "A"
    assert item_at("render_template", req)["rendered"]["locale"] == "en"


@pytest.mark.parametrize(("req", "reason"), [
    (request(template_id="needs_name"), "user alice: template 'needs_name' locale 'en': in title: 'name' is undefined"),
    (request(template_id="nope"), "user alice: unknown template 'nope' (locale 'en')"),
])
def test_template_errors_become_render_dead_letters(req, reason):
    item = item_at("render_template", req, catalog=BROKEN)
    assert (item["outcome"], item["stage"], item["reason"]) == ("dead_letter", "render", reason)
    assert "rendered" not in item
    (record,) = outgoing(item, LATER)
    assert record == ("notify.dlq", b"alice", {
        "original": encode(req), "original_key": b"alice", "topic": "notify.events", "partition": 0,
        "offset": item["source"]["offset"], "stage": "render", "reason": reason, "attempts": 1,
        "first_seen": LATER, "last_seen": LATER, "schema": None})
    assert roundtrip(*record[::2]) == record[2]


def test_finished_items_are_not_rendered():
    done = {"outcome": "dropped", "reason": "x"}
    [passed] = Each(functools.partial(render, BROKEN)).process({}, [done], LATER)
    assert passed is done


# --- lanes ------------------------------------------------------------------------------------


def routed(req, **user):
    return item_at("digest", req, **user)


@pytest.mark.parametrize(("req", "lane"), [
    (request(priority="critical"), "critical"),
    (request(priority="high"), "high"),
    (request(priority="normal"), "normal"),
    (request(priority="low"), "bulk"),
    (request(priority="high", metadata={"campaign_id": "spring-24"}), "bulk"),
    (request(priority="critical", metadata={"campaign_id": "spring-24"}), "critical"),
    (request(priority="normal", type="marketing", category="promotions"), "bulk"),
    (request(priority="critical", type="marketing", category="promotions"), "critical"),
])
def test_lane_for(req, lane):
    assert lane_for(routed(req, marketing_consent=True)) == lane


def test_digests_ride_the_bulk_lane():
    pipeline = Pipeline().user(digest=digest_settings("daily", "09:00"))
    pipeline.run(request())
    (digest,) = pipeline.release(datetime(2024, 5, 18, 9, tzinfo=UTC))
    assert lane_for(digest) == "bulk"
    # Because they are digests, not only because digests are low priority.
    assert lane_for({**digest, "priority": "high"}) == "bulk"
    assert lane_for({**digest, "priority": "critical"}) == "critical"


def test_lane_names_are_outbox_lanes():
    assert set(outbox.LANE_BY_PRIORITY.values()) <= set(LANES)


# --- jobs -------------------------------------------------------------------------------------


def test_one_job_per_sent_channel_and_a_requested_status_each():
    req = request(title="Bob sent you a message", body="Lunch?", category="messages",
                  content={"image_url": "https://cdn.example.com/bob.png", "icon": "https://cdn.example.com/i.png",
                           "badge": "3", "actions": [action("reply", "Reply", "reply")]},
                  metadata={"deep_link": "myapp://thread/9", "payload": {"thread": "9"},
                            "expires_at": NOW + timedelta(days=1)})
    item = routed(req, devices=[device("alice", "phone-1")], email="alice@example.com")
    out = outgoing(item, LATER)
    assert [(topic, key) for topic, key, _ in out] == [
        ("notify.outbox.in_app.normal", b"alice"), ("notify.status", b"alice"),
        ("notify.outbox.push.normal", b"alice"), ("notify.status", b"alice")]
    push = out[2][2]
    assert push == {
        "job_id": f"{req['id']}:alice:push:0", "notification_id": req["id"], "revision": 0, "request_ids": [req["id"]],
        "user_id": "alice", "tenant": "default", "channel": "push", "lane": "normal", "kind": "single",
        "priority": "normal", "type": "info", "category": "messages", "title": "Bob sent you a message",
        "body": "Lunch?", "html_body": "Lunch?", "image_url": "https://cdn.example.com/bob.png",
        "icon": "https://cdn.example.com/i.png", "badge": "3",
        "actions": [{"id": "reply", "title": "Reply", "action": "reply", "icon": None}],
        "deep_link": "myapp://thread/9", "payload": {"thread": "9"}, "locale": "en", "template_id": None,
        "variant": None, "campaign_id": None, "merge": None,
        "devices": [{"device_id": "phone-1", "platform": "android", "token": "fcm-token-1", "web_push": None}],
        "address": None, "fallback": [{"channel": "email", "after_seconds": 300, "address": "alice@example.com"}],
        "digest_items": [],
        "collapse_key": req["id"], "created_at": NOW, "expires_at": NOW + timedelta(days=1), "presentation": None}
    in_app = out[0][2]
    # Every job carries the push targets, so a failed channel can fall back to push.
    assert in_app == {**push, "job_id": f"{req['id']}:alice:in_app:0", "channel": "in_app"}
    assert out[1][2] == {
        "notification_id": req["id"], "user_id": "alice", "channel": "in_app", "device_id": None,
        "status": "requested", "attempt": 0, "provider": None, "reason": None, "category": "messages",
        "campaign_id": None, "variant": None, "platform": None, "created_at": NOW, "at": LATER,
        "tenant": "default", "cohort": None, "send_time": None}
    assert out[3][2] == {**out[1][2], "channel": "push"}


def test_contact_addresses_per_channel():
    browser = device("alice", "browser-1", platform="web", token=None, web_push=web_push_subscription())
    item = routed(request(priority="critical", channels=["push", "email", "sms", "webhook", "in_app"]),
                  devices=[device("alice", "phone-1"), browser], email="alice@example.com", phone="+15550100")
    jobs = {job["channel"]: job for topic, _, job in outgoing(item, LATER) if topic != "notify.status"}
    assert set(jobs) == set(CHANNELS)
    assert {c: j["address"] for c, j in jobs.items()} == {
        "push": None, "email": "alice@example.com", "sms": "+15550100", "webhook": None, "in_app": None}
    assert jobs["push"]["devices"] == [
        {"device_id": "phone-1", "platform": "android", "token": "fcm-token-1", "web_push": None},
        {"device_id": "browser-1", "platform": "web", "token": None, "web_push": web_push_subscription()}]
    assert all(j["devices"] == jobs["push"]["devices"] for j in jobs.values())
    assert all(j["lane"] == "critical" for j in jobs.values())
    assert {t for t, _, _ in outgoing(item, LATER)} == {outbox_topic(c, "critical") for c in CHANNELS} | {
        "notify.status"}


def test_merges_are_updates_with_a_merged_status():
    pipeline = Pipeline().user(devices=[device()])
    first, second = (request(title="Bob sent you a message", body="Ping", category="messages",
                             metadata={"created_at": NOW + timedelta(minutes=m)}) for m in (0, 1))
    pipeline.run(first)
    (merged,) = pipeline.run(second, now=NOW + timedelta(minutes=1))
    out = outgoing(merged, LATER)
    jobs = [job for topic, _, job in out if topic != "notify.status"]
    statuses = [s for topic, _, s in out if topic == "notify.status"]
    assert [j["job_id"] for j in jobs] == [f"{first['id']}:alice:in_app:1", f"{first['id']}:alice:push:1"]
    assert all(j["kind"] == "update" and j["revision"] == 1 and j["collapse_key"] == first["id"] for j in jobs)
    assert all(j["request_ids"] == [second["id"]] and j["body"] == "2 new messages" for j in jobs)
    assert jobs[0]["merge"] == {"strategy": "count", "count": 2, "items": ["Ping", "Ping"]}
    assert [(s["status"], s["notification_id"]) for s in statuses] == [("merged", first["id"])] * 2


def test_campaign_variant_is_reported():
    item = routed(request(metadata={"campaign_id": "spring-24"}))
    (job_record, status_record) = outgoing(item, LATER)
    assert job_record[0] == "notify.outbox.in_app.bulk"
    assert job_record[2]["variant"] in ("A", "B") and job_record[2]["campaign_id"] == "spring-24"
    assert status_record[2]["variant"] == job_record[2]["variant"]
    assert status_record[2]["campaign_id"] == "spring-24"


def test_digest_job():
    pipeline = Pipeline().user(digest=digest_settings("daily", "09:00"), email="alice@example.com")
    reqs = [request(title=f"n{i}", body=f"b{i}") for i in range(2)]
    pipeline.run(*reqs)
    due = datetime(2024, 5, 18, 9, tzinfo=UTC)
    (digest,) = pipeline.release(due)
    ((topic, key, job), (status_topic, _, status)) = outgoing(digest, LATER)
    assert (topic, key) == ("notify.outbox.email.bulk", b"alice")
    assert job["job_id"] == "digest:alice:20240518T0900:alice:email:0"
    assert (job["kind"], job["priority"], job["category"], job["address"]) == (
        "digest", "low", "digest", "alice@example.com")
    assert [(d["notification_id"], d["title"], d["body"]) for d in job["digest_items"]] == [
        (reqs[0]["id"], "n0", "b0"), (reqs[1]["id"], "n1", "b1")]
    assert job["created_at"] == due and job["expires_at"] is None
    assert (status_topic, status["status"], status["channel"]) == ("notify.status", "requested", "email")


# --- statuses for outcomes --------------------------------------------------------------------


def only_status(item):
    (record,) = outgoing(item, LATER)
    topic, key, status = record
    assert topic == "notify.status"
    assert roundtrip(topic, status) == status
    return key, status


def test_deferred_status():
    req = request()
    item = item_at("digest", req, quiet_hours=quiet_hours("21:00", "07:00", "Asia/Tokyo"))
    key, status = only_status(item)
    assert key == b"alice"
    assert status == {"notification_id": req["id"], "user_id": "alice", "channel": None, "device_id": None,
                      "status": "deferred", "attempt": 0, "provider": None,
                      "reason": "held until 2024-05-17T22:00:00+00:00", "category": "general",
                      "campaign_id": None, "variant": None, "platform": None, "created_at": NOW, "at": LATER,
                      "tenant": "default", "cohort": None, "send_time": None}


@pytest.mark.parametrize(("req", "user", "state", "reason"), [
    (request(category="marketing"), {}, "dropped", "no marketing consent"),
    (request(), {"enabled": False}, "dropped", "notifications are turned off"),
    (request(channels=["sms"]), {}, "dropped", "no allowed channel can reach the user"),
    (request(), {"digest": digest_settings("weekly", "08:00")}, "digested", "weekly digest"),
    (request(metadata={"created_at": NOW - timedelta(hours=2), "expires_at": NOW - timedelta(hours=1)}), {},
     "expired", "expired at 2024-05-17T11:00:00+00:00"),
])
def test_outcome_statuses(req, user, state, reason):
    key, status = only_status(item_at("digest", req, **user))
    assert (key, status["status"], status["reason"], status["channel"]) == (b"alice", state, reason, None)
    assert status["notification_id"] == req["id"] and status["user_id"] == "alice"


def test_deduplicated_and_rate_limited_statuses():
    pipeline = Pipeline().user(marketing_consent=True)
    dup = request()
    pipeline.run(dup)
    (again,) = pipeline.run(dup)
    assert only_status(again)[1]["status"] == "deduplicated"
    mails = [request(category="marketing", type="marketing", body=f"offer {i}") for i in range(3)]
    out = pipeline.run(*mails)
    _, status = only_status(out[-1])
    assert (status["status"], status["reason"]) == ("rate_limited", "marketing cap of 2 per day reached")


def test_statuses_without_a_user_are_keyed_by_the_message_key():
    expired = fan_out(["bob"], metadata={"created_at": NOW - timedelta(hours=2), "expires_at": NOW - timedelta(hours=1)})
    (item,) = Pipeline().run(expired)
    key, status = only_status(item)
    assert key == expired["id"].encode() and status["user_id"] == "" and status["status"] == "expired"
    (empty,) = Pipeline().run(fan_out(segment="ghosts"))
    key, status = only_status(empty)
    assert key == empty["request"]["id"].encode()
    assert (status["user_id"], status["status"], status["reason"]) == (
        "", "dropped", "audience segment:ghosts has no members")


# --- dead letters -----------------------------------------------------------------------------


def test_decode_dead_letter_keeps_the_original_bytes_and_key():
    pipeline = Pipeline()
    (item,) = [pipeline.message("notify.events", b"some-key", b"\xff\x00garbage")]
    (record,) = outgoing(item, LATER)
    assert record == ("notify.dlq", b"some-key", {
        "original": b"\xff\x00garbage", "original_key": b"some-key", "topic": "notify.events", "partition": 0,
        "offset": item["source"]["offset"], "stage": "decode", "reason": item["reason"], "attempts": 1,
        "first_seen": LATER, "last_seen": LATER, "schema": None})
    assert roundtrip("notify.dlq", record[2]) == record[2]


def test_validate_dead_letter_without_a_key():
    req = request(content={"image_url": "http://cdn.example.com/a.png"})
    item = Pipeline().message("notify.events", None, encode(req))
    ((topic, key, dead),) = outgoing(item, LATER)
    assert (topic, key, dead["original"], dead["original_key"], dead["stage"], dead["reason"]) == (
        "notify.dlq", None, encode(req), None, "validate",
        "content.image_url: scheme 'http' is not allowed; use https")


# --- everything the flow writes encodes --------------------------------------------------------


def everything() -> list[tuple[str, bytes | None, dict]]:
    """Records from a spread of situations, through the real steps end to end."""
    items = []
    members = {"segment:beta": ["bob", "carol"], "topic:ghosts": []}
    pipeline = Pipeline(members=members)
    pipeline.user("alice", devices=[device("alice", "phone-1"), device(
        "alice", "browser-1", platform="web", token=None, web_push=web_push_subscription())],
        email="alice@example.com", phone="+15550100", marketing_consent=True)
    pipeline.user("bob", online=True, quiet_hours=quiet_hours("21:00", "07:00", "Asia/Tokyo"))
    pipeline.user("carol", digest=digest_settings("daily", "09:00", "Europe/Lisbon"), email="carol@example.com",
                  channels={"push": channel_settings(enabled=False)})
    items += pipeline.run(
        request("alice", title="Hi", body="there", content={"actions": [action("r", "Reply", "reply"),
                                                                       action("o", "Open", "https://x.example.com")]},
                metadata={"deep_link": "myapp://x", "payload": {"a": "b"}, "expires_at": NOW + timedelta(hours=1)}),
        request("alice", title="Alert", body="sign-in", category="security", priority="critical",
                channels=["push", "email", "sms", "webhook", "in_app"]),
        request("alice", title="Sale", body="20%", category="marketing", type="marketing", priority="low",
                metadata={"campaign_id": "spring"}),
        request("alice", title="Welcome", body="", template_id="welcome",
                template_vars={"name": "Ana", "product": "Acme"}),
        fan_out(segment="beta", title="Beta news", body="v2"),
        fan_out(topic="ghosts", title="Nobody", body="home"),
        request("alice", metadata={"created_at": NOW - timedelta(hours=2), "expires_at": NOW - timedelta(hours=1)}),
        request("alice", template_id="missing"),
    )
    for i in range(3):
        items += pipeline.run(request("alice", title="Bob sent you a message", body="Ping", category="messages",
                                      metadata={"created_at": NOW + timedelta(seconds=i)}))
    items.append(pipeline.message("notify.events", b"k", b"\x00\x01garbage"))
    items += pipeline.release(datetime(2024, 5, 18, 9, tzinfo=UTC))
    return records_of(items, LATER)


def test_every_record_encodes_with_the_codec_of_its_topic():
    produced = everything()
    topics = {topic for topic, _, _ in produced}
    assert {"notify.dlq", "notify.status", "notify.outbox.push.normal", "notify.outbox.in_app.normal",
            "notify.outbox.email.critical", "notify.outbox.sms.critical", "notify.outbox.webhook.critical",
            "notify.outbox.in_app.bulk", "notify.outbox.email.bulk"} <= topics
    statuses = {record["status"] for topic, _, record in produced if topic == "notify.status"}
    assert statuses == {"requested", "merged", "deferred", "digested", "dropped", "expired"}
    stages = {record["stage"] for topic, _, record in produced if topic == "notify.dlq"}
    assert stages == {"decode", "render"}
    for topic, key, record in produced:
        assert key is None or isinstance(key, bytes)
        assert roundtrip(topic, record) == record, topic
