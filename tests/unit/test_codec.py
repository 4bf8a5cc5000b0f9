import datetime as dt
import io
import json
import struct
from pathlib import Path

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from schemas import SCHEMA_NAMES, AvroCodec, CodecError, load_schema

SCHEMA_DIR = Path(schemas.__file__).parent

TOPIC = "notifications.requested"
# Millisecond precision: timestamp-millis drops anything finer.
NOW = dt.datetime(2024, 5, 17, 9, 30, 15, 123000, tzinfo=dt.timezone.utc)
PARIS = dt.timezone(dt.timedelta(hours=2))


def mock_registry():
    # SchemaRegistryClient({"url": "mock://"}) builds a real HTTP client; new_client returns the mock.
    return SchemaRegistryClient.new_client({"url": "mock://"})


def plain(name="NotificationRequested"):
    return AvroCodec(name)


def confluent(name="NotificationRequested", registry=None):
    return AvroCodec(name, registry=registry or mock_registry(), topic=TOPIC)


FULL_NOTIFICATION = {
    "id": "4f1c1c1e-6a0e-4c1e-9a57-0b7f1c0e3d11",
    "tenant": "acme",
    "user_id": None,
    "audience": {"user_ids": ["u1", "u2"], "segment": "beta-testers", "topic": None},
    "type": "marketing",
    "category": "promotions",
    "priority": "high",
    "content": {
        "title": "Spring sale",
        "body": "20% off everything — today only ✨",
        "image_url": "https://cdn.example.com/sale.png",
        "icon": "tag",
        "badge": "3",
        "actions": [
            {"id": "shop", "title": "Shop now", "action": "open_url", "icon": "cart"},
            {"id": "later", "title": "Remind me", "action": "snooze", "icon": None},
        ],
    },
    "metadata": {
        "created_at": NOW,
        "expires_at": NOW + dt.timedelta(days=1),
        "deep_link": "acme://sale",
        "payload": {"discount": "20", "sku": "ALL"},
        "source_app": "marketing-service",
        "campaign_id": "spring-2024",
    },
    "channels": ["push", "email", "in_app"],
    "scheduled_at": NOW + dt.timedelta(hours=1),
    "idempotency_key": "spring-2024:u1",
    "locale": "fr-FR",
    "template_id": "sale-v2",
    "template_vars": {"name": "Ada"},
    "send_time": "optimal",
}

MINIMAL = {
    "NotificationRequested": {
        "id": "n1",
        "tenant": "acme",
        "user_id": "u1",
        "type": "info",
        "category": "account",
        "priority": "normal",
        "content": {"title": "Hi", "body": "Welcome"},
        "metadata": {"created_at": NOW, "source_app": "accounts"},
    },
    "PreferencesUpdated": {"user_id": "u1", "updated_at": NOW},
    "DeviceRegistered": {"user_id": "u1", "device_id": "d1", "platform": "ios", "registered_at": NOW},
    "PresenceChanged": {"user_id": "u1", "device_id": "d1", "status": "online", "at": NOW},
    "DeliveryStatus": {
        "notification_id": "n1",
        "user_id": "u1",
        "channel": "push",
        "status": "delivered",
        "attempt": 1,
        "created_at": NOW,
        "at": NOW,
    },
    "EngagementEvent": {"notification_id": "n1", "user_id": "u1", "action": "opened", "at": NOW},
    "DeadLetter": {
        "original": b"\x00\xffnot avro",
        "topic": TOPIC,
        "partition": 3,
        "offset": 2**40,
        "stage": "validate",
        "reason": "truncated Avro payload",
        "attempts": 1,
        "first_seen": NOW,
        "last_seen": NOW,
    },
    "DeliveryJob": {
        "job_id": "n1:u1:push:0",
        "notification_id": "n1",
        "revision": 0,
        "request_ids": ["n1"],
        "user_id": "u1",
        "tenant": "acme",
        "channel": "push",
        "lane": "normal",
        "kind": "single",
        "priority": "normal",
        "type": "info",
        "category": "account",
        "title": "Hi",
        "body": "Welcome",
        "html_body": "Welcome",
        "locale": "en",
        "collapse_key": "n1",
        "created_at": NOW,
    },
}


def assert_contains(decoded, expected):
    """Every field given came back unchanged (defaults fill in the rest)."""
    for key, value in expected.items():
        if isinstance(value, dict) and isinstance(decoded[key], dict):
            assert_contains(decoded[key], value)
        else:
            assert decoded[key] == value, key


# --- schemas ---------------------------------------------------------------------------


def test_schema_names_match_the_avsc_files():
    on_disk = {path.stem for path in SCHEMA_DIR.glob("*.avsc")}
    assert on_disk == set(SCHEMA_NAMES)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schemas_are_in_the_notifyflow_namespace(name):
    assert load_schema(name)["name"] == f"notifyflow.{name}"
    assert load_schema(name) is load_schema(name)


def test_unknown_schema_name():
    with pytest.raises(ValueError, match="unknown schema"):
        load_schema("../pyproject")


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("make", [plain, confluent], ids=["plain", "confluent"])
def test_full_notification_round_trips(make):
    codec = make()
    assert codec.decode(codec.encode(FULL_NOTIFICATION)) == FULL_NOTIFICATION


@pytest.mark.parametrize("make", [plain, confluent], ids=["plain", "confluent"])
@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_minimal_record_round_trips(make, name):
    codec = make(name)
    decoded = codec.decode(codec.encode(MINIMAL[name]))
    assert_contains(decoded, MINIMAL[name])


def test_defaults_fill_in_optional_fields():
    codec = plain("PreferencesUpdated")
    decoded = codec.decode(codec.encode(MINIMAL["PreferencesUpdated"]))
    assert decoded["deleted"] is False
    assert decoded["enabled"] is True
    assert decoded["channels"] == {} and decoded["categories"] == {}
    assert decoded["quiet_hours"] is None and decoded["email"] is None
    assert decoded["timezone"] == "UTC"


def test_full_preferences_round_trip():
    prefs = {
        **MINIMAL["PreferencesUpdated"],
        "quiet_hours": {"start_time": "22:00", "end_time": "07:00", "timezone": "Europe/Paris", "days": ["mon"]},
        "digest": {"enabled": True, "frequency": "daily", "time": "08:00", "timezone": "Europe/Paris"},
        "channels": {"sms": {"enabled": True, "categories": ["security"], "frequency": None, "emergency_only": True}},
        "categories": {"promotions": {"enabled": False, "channels": [], "priority_override": "low"}},
        "marketing_consent": True,
        "email": "ada@example.com",
        "phone": "+33600000000",
    }
    codec = plain("PreferencesUpdated")
    assert_contains(codec.decode(codec.encode(prefs)), prefs)


def test_datetimes_come_back_as_utc():
    record = {**MINIMAL["PresenceChanged"], "at": NOW.astimezone(PARIS)}
    decoded = plain("PresenceChanged").decode(plain("PresenceChanged").encode(record))
    assert decoded["at"] == NOW
    assert decoded["at"].utcoffset() == dt.timedelta(0)


def test_epoch_millis_and_bytearray_are_accepted():
    codec = plain("DeadLetter")
    record = {**MINIMAL["DeadLetter"], "original": bytearray(b"raw"), "first_seen": 1715938215123}
    decoded = codec.decode(codec.encode(record))
    assert decoded["original"] == b"raw"
    assert decoded["first_seen"] == NOW


def test_confluent_framing_header_and_subject():
    registry = mock_registry()
    data = confluent(registry=registry).encode(MINIMAL["NotificationRequested"])
    magic, schema_id = struct.unpack(">BI", data[:5])
    assert magic == 0
    assert registry.get_latest_version(f"{TOPIC}-value").schema_id == schema_id
    assert data[5:] == plain().encode(MINIMAL["NotificationRequested"])


def test_confluent_decode_resolves_an_older_writer_schema():
    # A producer still on a schema without the newer optional fields.
    old = json.loads((SCHEMA_DIR / "PresenceChanged.avsc").read_text())
    old["fields"] = [field for field in old["fields"] if field["name"] != "gateway_id"]
    registry = mock_registry()
    old_id = registry.register_schema("older-value", Schema(json.dumps(old), "AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(old), MINIMAL["PresenceChanged"])
    decoded = confluent("PresenceChanged", registry).decode(struct.pack(">BI", 0, old_id) + body.getvalue())
    assert decoded == {**MINIMAL["PresenceChanged"], "gateway_id": None, "tenant": "default"}


# --- invalid records -------------------------------------------------------------------


def reason_of(codec, record):
    with pytest.raises(CodecError) as caught:
        codec.encode(record)
    return caught.value.reason


def test_missing_required_field_is_named():
    record = {k: v for k, v in MINIMAL["NotificationRequested"].items() if k != "category"}
    assert reason_of(plain(), record) == "field category: missing required field"


def test_missing_nested_field_is_named():
    record = {**MINIMAL["NotificationRequested"], "metadata": {"created_at": NOW}}
    assert reason_of(plain(), record) == "field metadata.source_app: missing required field"


def test_wrong_type_in_content_is_named():
    record = {**MINIMAL["NotificationRequested"], "content": {"title": 42, "body": "b"}}
    assert reason_of(plain(), record) == "field content.title: expected string, got int"


def test_wrong_type_in_an_action_names_its_index():
    content = {"title": "t", "body": "b", "actions": [{"id": "a", "title": "A", "action": "x"}, {"id": "b"}]}
    record = {**MINIMAL["NotificationRequested"], "content": content}
    assert reason_of(plain(), record) == "field content.actions[1].title: missing required field"


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"priority": "urgent"}, "field priority: expected one of low, normal, high, critical, got 'urgent'"),
        ({"channels": ["push", "pigeon"]}, "field channels[1]: expected one of push, email, sms, webhook, in_app"),
        ({"user_id": 7}, "field user_id: expected string, got int"),
        ({"tittle": "typo"}, "record: unknown fields tittle"),
        ({"metadata": {"created_at": NOW.replace(tzinfo=None), "source_app": "a"}}, "naive"),
        ({"metadata": {"created_at": "yesterday", "source_app": "a"}}, "field metadata.created_at: expected"),
        ({"metadata": {"created_at": NOW, "source_app": "a", "payload": {"n": 1}}}, "field metadata.payload['n']"),
    ],
)
def test_invalid_fields_are_named(change, reason):
    assert reason in reason_of(plain(), {**MINIMAL["NotificationRequested"], **change})


def test_bool_is_not_an_int():
    assert reason_of(plain("DeliveryStatus"), {**MINIMAL["DeliveryStatus"], "attempt": True}) == (
        "field attempt: expected int, got bool"
    )


def test_int_out_of_range():
    assert "out of range" in reason_of(plain("DeliveryStatus"), {**MINIMAL["DeliveryStatus"], "attempt": 2**31})


def test_not_a_record():
    assert reason_of(plain(), ["not", "a", "dict"]).startswith("record: expected record")


# --- invalid bytes ---------------------------------------------------------------------


def decode_reason(codec, data):
    with pytest.raises(CodecError) as caught:
        codec.decode(data)
    return caught.value.reason


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x9c\x01{\x02garbage", "truncated Avro payload"),  # a 78-byte id, 9 bytes left
        # id "a", tenant "t", then union branch 32 of the 2 in user_id.
        (b"\x02a\x02t\x40\x02u", "malformed NotificationRequested: union branch or enum symbol out of range"),
        (b"\x02\xff\x02t", "invalid UTF-8 in string: invalid start byte"),
    ],
)
def test_random_bytes(data, reason):
    assert decode_reason(plain(), data) == reason


def test_truncated_payload():
    data = plain().encode(FULL_NOTIFICATION)
    assert decode_reason(plain(), data[:-10]).startswith("truncated Avro payload")


def test_truncated_confluent_payload():
    codec = confluent()
    data = codec.encode(FULL_NOTIFICATION)
    assert decode_reason(codec, data[:-10]).startswith("truncated Avro payload")
    assert decode_reason(codec, data[:3]) == "truncated Confluent header: 3 of 5 bytes"


def test_trailing_bytes():
    assert decode_reason(plain(), plain().encode(FULL_NOTIFICATION) + b"\x00\x01") == (
        "2 trailing bytes after the Avro record"
    )
    codec = confluent()
    assert "trailing bytes" in decode_reason(codec, codec.encode(FULL_NOTIFICATION) + b"\x00")


def test_invalid_utf8():
    data = plain("PresenceChanged").encode({**MINIMAL["PresenceChanged"], "user_id": "ab"})
    broken = data.replace(b"ab", b"\xff\xfe", 1)
    assert decode_reason(plain("PresenceChanged"), broken).startswith("invalid UTF-8")


def test_wrong_magic_byte():
    assert decode_reason(confluent(), b'{"id": "n1"}') == "not Confluent framing: magic byte 0x7b"
    assert decode_reason(confluent(), b"") == "empty message"


def test_unknown_schema_id():
    codec = confluent()
    data = codec.encode(MINIMAL["NotificationRequested"])
    assert decode_reason(codec, struct.pack(">BI", 0, 42) + data[5:]) == "unknown schema id 42"


def test_registry_outage_is_not_a_codec_error():
    # A message is not bad because the registry is down: the caller should retry, not dead-letter it.
    class DownRegistry:
        def get_schema(self, schema_id):
            raise SchemaRegistryError(503, -1, "unavailable")

    codec = AvroCodec("PresenceChanged", registry=DownRegistry(), topic=TOPIC)
    with pytest.raises(SchemaRegistryError):
        codec.decode(struct.pack(">BI", 0, 1) + plain("PresenceChanged").encode(MINIMAL["PresenceChanged"]))


def test_plain_bytes_are_not_confluent_framed():
    # Plain Avro for this record starts with the id's length, not with 0.
    assert decode_reason(confluent(), plain().encode(MINIMAL["NotificationRequested"])).startswith(
        "not Confluent framing"
    )


def test_decode_requires_bytes():
    assert decode_reason(plain(), "text") == "expected bytes, got str"


def test_registry_needs_a_topic():
    with pytest.raises(ValueError, match="topic"):
        AvroCodec("DeadLetter", registry=mock_registry())


# --- fuzzing ---------------------------------------------------------------------------

PLAIN_CODECS = {name: plain(name) for name in SCHEMA_NAMES}
CONFLUENT_CODECS = {name: confluent(name) for name in SCHEMA_NAMES}
# Ids this registry knows, so fuzzed Confluent messages reach the Avro body, not just the id lookup.
KNOWN_IDS = sorted({codec._registered_id() for codec in CONFLUENT_CODECS.values()})
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_codec_error(codec, data):
    try:
        assert isinstance(codec.decode(data), dict)
    except CodecError as exc:
        assert exc.reason


@FUZZ
@given(name=st.sampled_from(SCHEMA_NAMES), data=st.binary(max_size=256))
def test_arbitrary_bytes_plain(name, data):
    decodes_or_codec_error(PLAIN_CODECS[name], data)


@FUZZ
@given(
    name=st.sampled_from(SCHEMA_NAMES),
    header=st.one_of(
        st.binary(max_size=6),
        st.sampled_from(KNOWN_IDS).map(lambda schema_id: struct.pack(">BI", 0, schema_id)),
    ),
    body=st.binary(max_size=256),
)
def test_arbitrary_bytes_confluent(name, header, body):
    decodes_or_codec_error(CONFLUENT_CODECS[name], header + body)


@FUZZ
@given(name=st.sampled_from(SCHEMA_NAMES), data=st.data())
def test_mutated_valid_messages(name, data):
    # Random bytes rarely get past the first field; flipping bytes of a real message goes deeper.
    codec = PLAIN_CODECS[name]
    message = bytearray(codec.encode(MINIMAL[name]))
    for _ in range(data.draw(st.integers(1, 4))):
        message[data.draw(st.integers(0, len(message) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message) + 2))
    decodes_or_codec_error(codec, bytes(message[:cut]) + data.draw(st.binary(max_size=3)))
