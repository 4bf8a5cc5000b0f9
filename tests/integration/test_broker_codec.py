"""Records cross the real broker through the codec, in plain Avro and Confluent framing."""

from __future__ import annotations

import os
import struct
import uuid

import pytest

from connectors.kafka import produce_all, producer, read_topic
from kernel.requests import notification_request, routing_key
from kernel.topics import codec_for, registry_client
from schemas import CodecError


def full_request(user_id: str) -> dict:
    return notification_request(
        user_id=user_id, title="Build #42 failed", body="3 tests failed on main", category="ci",
        priority="high", type="error", locale="en-GB",
        content={"title": "Build #42 failed", "body": "3 tests failed on main",
                 "image_url": "https://ci.example.com/badge.png", "icon": "x-circle", "badge": "1",
                 "actions": [{"id": "open", "title": "Open build", "action": "open_url", "icon": None}]},
        idempotency_key=f"build-42-{user_id}",
    )


def read_back(topic: str, key: bytes, how_many: int):
    found = [m for m in read_topic(os.environ["KAFKA_BOOTSTRAP_SERVERS"], topic) if m.key() == key]
    assert len(found) == how_many
    return found


@pytest.mark.parametrize("registry_url", [None, "mock://round-trip"], ids=["plain", "confluent"])
def test_a_notification_round_trips_through_the_broker(stack, registry_url):
    codec = codec_for("notify.events", registry_url)
    request = full_request(f"user-{uuid.uuid4()}")
    encoded = codec.encode(request)
    if registry_url:
        magic, schema_id = struct.unpack(">bI", encoded[:5])
        assert magic == 0
        assert registry_client(registry_url).get_schema(schema_id).schema_str
    produce_all(producer(os.environ["KAFKA_BOOTSTRAP_SERVERS"]), "notify.events",
                [(routing_key(request), encoded)])

    [message] = read_back("notify.events", routing_key(request), 1)
    decoded = codec.decode(message.value())
    assert decoded["id"] == request["id"]
    assert decoded["content"] == request["content"]
    assert decoded["metadata"]["created_at"] == request["metadata"]["created_at"].replace(
        microsecond=request["metadata"]["created_at"].microsecond // 1000 * 1000)
    assert decoded["idempotency_key"] == request["idempotency_key"]


def test_one_users_records_share_a_partition_in_order(stack):
    codec = codec_for("notify.events")
    user = f"user-{uuid.uuid4()}"
    requests = [notification_request(user_id=user, title=f"message {i}", body="") for i in range(20)]
    produce_all(producer(os.environ["KAFKA_BOOTSTRAP_SERVERS"]), "notify.events",
                [(routing_key(r), codec.encode(r)) for r in requests])
    messages = read_back("notify.events", user.encode(), 20)
    assert len({m.partition() for m in messages}) == 1
    assert [codec.decode(m.value())["content"]["title"] for m in messages] == [f"message {i}" for i in range(20)]


def test_an_invalid_record_is_rejected_with_its_reason(stack):
    codec = codec_for("notify.events")
    request = full_request("user-invalid")
    request["content"]["title"] = 42
    with pytest.raises(CodecError) as rejected:
        codec.encode(request)
    assert "title" in rejected.value.reason


@pytest.mark.parametrize("registry_url", [None, "mock://garbage"], ids=["plain", "confluent"])
def test_garbage_on_the_topic_is_rejected_on_decode_with_a_reason(stack, registry_url):
    key = f"garbage-{uuid.uuid4()}".encode()
    good = codec_for("notify.events", registry_url).encode(full_request("someone"))
    produce_all(producer(os.environ["KAFKA_BOOTSTRAP_SERVERS"]), "notify.events",
                [(key, good[: len(good) // 2]), (key, b"\x07not avro at all")])
    codec = codec_for("notify.events", registry_url)
    for message in read_back("notify.events", key, 2):
        with pytest.raises(CodecError) as rejected:
            codec.decode(message.value())
        assert rejected.value.reason
