"""flows/intake.py (Kafka message -> item) and flows/audience.py (fan-out to one item per user)."""

from datetime import timedelta

import pytest

from flows import audience
from flows.intake import Intake
from kernel.topics import USER_STATE_TOPICS, codec_for
from schemas import CodecError

from flow_items import (NOW, MembersOf, Pipeline, audience_of, device, encode, fan_out, preferences_record, presence,
                        request)


def consume(value: bytes, topic: str = "notify.events", key: bytes | None = b"alice", now=NOW,
            intake: Intake | None = None) -> dict:
    return (intake or Intake()).item(topic, 3, 41, key, value, now)


# --- intake: notification requests ------------------------------------------------------------


def test_avro_bytes_become_a_notification_item():
    req = request(title="Build #7 passed", body="main is green", category="ci")
    value = encode(req)
    item = consume(value)
    assert item == {"kind": "notification", "user_id": "alice", "tenant": "default", "request": req,
                    "source": {"topic": "notify.events", "partition": 3, "offset": 41, "key": b"alice",
                               "value": value, "timestamp_ms": None}}
    assert "outcome" not in item


def test_control_characters_are_cleaned_but_the_source_keeps_the_original_bytes():
    req = request(title="Hi\x00 there\x1b", body="ok\x07\nbye")
    value = encode(req)
    item = consume(value)
    assert item["request"]["content"]["title"] == "Hi there"
    assert item["request"]["content"]["body"] == "ok\nbye"
    assert item["source"]["value"] == value
    assert codec_for("notify.events").decode(item["source"]["value"])["content"]["title"] == "Hi\x00 there\x1b"


@pytest.mark.parametrize(("value", "reason"), [
    (b"", "truncated Avro payload"),
    (b"\x02", "truncated Avro payload"),
])
def test_garbage_bytes_become_a_decode_dead_letter(value, reason):
    item = consume(value, key=b"k1")
    assert item == {"kind": "notification", "user_id": None, "request": None,
                    "source": {"topic": "notify.events", "partition": 3, "offset": 41, "key": b"k1", "value": value, "timestamp_ms": None},
                    "outcome": "dead_letter", "stage": "decode", "reason": reason}


def test_trailing_bytes_are_a_decode_dead_letter():
    value = encode(request()) + b"\x00\x01"
    item = consume(value)
    assert (item["outcome"], item["stage"], item["reason"]) == (
        "dead_letter", "decode", "2 trailing bytes after the Avro record")
    assert item["source"]["value"] == value


@pytest.mark.parametrize("value", [b"\xff" * 40, b"not avro at all, just text", bytes(range(256))])
def test_any_garbage_is_dead_lettered_with_the_codec_reason(value):
    with pytest.raises(CodecError) as raised:
        codec_for("notify.events").decode(value)
    item = consume(value, key=None)
    assert (item["outcome"], item["stage"], item["reason"]) == ("dead_letter", "decode", raised.value.reason)
    assert item["source"]["key"] is None and item["source"]["value"] == value


def test_invalid_request_becomes_a_validate_dead_letter():
    req = request(metadata={"deep_link": "javascript:alert(1)"})
    value = encode(req)
    item = consume(value)
    assert item == {"kind": "notification", "user_id": None, "request": None,
                    "source": {"topic": "notify.events", "partition": 3, "offset": 41, "key": b"alice",
                               "value": value, "timestamp_ms": None},
                    "outcome": "dead_letter", "stage": "validate",
                    "reason": "metadata.deep_link: scheme 'javascript' is not allowed"}


def test_validation_uses_the_given_now():
    req = request(metadata={"created_at": NOW + timedelta(minutes=10)})
    assert consume(encode(req), now=NOW)["stage"] == "validate"
    assert "outcome" not in consume(encode(req), now=NOW + timedelta(minutes=6))


def test_expired_request_is_finished_as_expired():
    expires = NOW - timedelta(minutes=1)
    req = request(title="Flash sale\x00", metadata={"created_at": NOW - timedelta(hours=1), "expires_at": expires})
    item = consume(encode(req))
    assert item["outcome"] == "expired"
    assert item["reason"] == "expired at 2024-05-17T11:59:00+00:00"
    assert item["user_id"] == "alice" and item["kind"] == "notification"
    assert item["request"]["content"]["title"] == "Flash sale"  # cleaned like any other
    assert item["source"]["value"] == encode(req)


def test_not_yet_expired_request_goes_on():
    req = request(metadata={"expires_at": NOW + timedelta(seconds=1)})
    assert "outcome" not in consume(encode(req))


def test_confluent_framing_with_a_registry():
    url = "mock://intake-unit-tests"
    req = request()
    framed = codec_for("notify.events", url).encode(req)
    assert framed[:1] == b"\x00"
    intake = Intake(url)
    assert consume(framed, intake=intake)["request"] == req
    plain = consume(encode(req), intake=intake)
    assert (plain["outcome"], plain["stage"], plain["reason"]) == (
        "dead_letter", "decode", f"not Confluent framing: magic byte 0x{encode(req)[0]:02x}")


# --- intake: user state -----------------------------------------------------------------------


@pytest.mark.parametrize(("topic", "record"), [
    ("notify.preferences", preferences_record("alice", email="alice@example.com")),
    ("notify.devices", device("alice", "phone-1")),
    ("notify.presence", presence("alice", "phone-1", "away")),
])
def test_user_state_topics_become_user_state_items(topic, record):
    item = consume(encode(record, topic), topic=topic)
    assert item == {"kind": "user_state", "topic": topic, "user_id": "alice", "tenant": "default",
                    "record": record}


def test_every_user_state_topic_is_known():
    assert USER_STATE_TOPICS == ("notify.preferences", "notify.devices", "notify.presence")


def test_garbage_on_a_user_state_topic_is_dead_lettered():
    item = consume(b"\xff\xff\xff", topic="notify.devices", key=b"alice")
    assert item["outcome"] == "dead_letter" and item["stage"] == "decode"
    assert item["source"]["topic"] == "notify.devices"


# --- audience ---------------------------------------------------------------------------------


def intake_items(*requests):
    return Pipeline(until="decode_and_validate").run(*requests)


def test_groups_of():
    assert audience.groups_of(fan_out(segment="beta", topic="releases")) == ["segment:beta", "topic:releases"]
    assert audience.groups_of(fan_out(["bob"])) == []
    assert audience.groups_of(request("alice")) == []


def test_list_fan_out_removes_duplicates_and_keeps_order():
    req = fan_out(["carol", "bob", "carol", "alice", "bob"], title="Standup in 5")
    members_of = MembersOf()
    out = audience.expand(intake_items(req), members_of)
    assert [item["user_id"] for item in out] == ["carol", "bob", "alice"]
    assert members_of.calls == []  # a list needs no lookup
    for item in out:
        assert item["request"]["user_id"] == item["user_id"]
        assert item["request"]["audience"] is None
        assert item["request"]["id"] == req["id"]
        assert item["request"]["content"] == req["content"]
        assert item["source"]["value"] == encode(req)
        assert "outcome" not in item


def test_segments_and_topics_are_looked_up_once_per_batch_for_all_groups():
    members_of = MembersOf({"segment:beta": ["dave", "bob"], "topic:releases": ["bob", "erin"],
                            "segment:admins": ["zoe"]})
    batch = intake_items(
        fan_out(["alice"], segment="beta", topic="releases", title="v2 is out"),
        request("frank", title="Just for Frank"),
        fan_out(segment="admins", title="Maintenance tonight"),
        fan_out(segment="beta", title="Beta survey"),
    )
    out = audience.expand(batch, members_of)
    assert members_of.calls == [{"segment:beta", "topic:releases", "segment:admins"}]
    assert [(item["request"]["content"]["title"], item["user_id"]) for item in out] == [
        ("v2 is out", "alice"), ("v2 is out", "dave"), ("v2 is out", "bob"), ("v2 is out", "erin"),
        ("Just for Frank", "frank"),
        ("Maintenance tonight", "zoe"),
        ("Beta survey", "dave"), ("Beta survey", "bob"),
    ]


def test_a_batch_of_single_user_requests_needs_no_lookup():
    members_of = MembersOf()
    batch = intake_items(request("alice"), request("bob"))
    out = audience.expand(batch, members_of)
    assert members_of.calls == []
    assert out == batch  # untouched


def test_audience_without_members_is_dropped():
    members_of = MembersOf({"segment:beta": ["bob"]})
    batch = intake_items(fan_out(segment="ghosts"), fan_out(topic="nobody-follows"), fan_out(segment="beta"))
    out = audience.expand(batch, members_of)
    assert members_of.calls == [{"segment:ghosts", "topic:nobody-follows", "segment:beta"}]
    assert [(item.get("outcome"), item.get("reason"), item["user_id"]) for item in out] == [
        ("dropped", "audience segment:ghosts has no members", ""),
        ("dropped", "audience topic:nobody-follows has no members", ""),
        (None, None, "bob"),
    ]
    # The flow keys every item by user id: even a dropped audience needs a str key.
    assert all(isinstance(item["user_id"], str) for item in out)
    assert out[0]["request"]["id"] == batch[0]["request"]["id"]


def test_a_single_user_request_with_an_empty_audience_record_is_not_fanned_out():
    batch = intake_items(request("alice", audience=audience_of()))
    assert "outcome" not in batch[0]
    members_of = MembersOf()
    out = audience.expand(batch, members_of)
    assert out == batch and members_of.calls == []


def test_finished_items_pass_through_untouched():
    expired = intake_items(fan_out(segment="beta", metadata={"created_at": NOW - timedelta(hours=1),
                                                             "expires_at": NOW - timedelta(minutes=1)}))
    assert expired[0]["outcome"] == "expired"
    members_of = MembersOf({"segment:beta": ["bob"]})
    assert audience.expand(expired, members_of) == expired
    assert members_of.calls == []


def test_fan_out_through_the_pipeline_reaches_each_user_with_their_own_state():
    pipeline = Pipeline(until="join_user_state", members={"topic:releases": ["bob", "carol"]})
    pipeline.user("bob", email="bob@example.com")
    out = pipeline.run(fan_out(topic="releases"))
    assert [item["user_id"] for item in out] == ["bob", "carol"]
    assert out[0]["user"]["preferences"]["email"] == "bob@example.com"
    assert out[1]["user"]["preferences"]["email"] is None
    assert pipeline.members_of.calls == [{"topic:releases"}]
