"""Delivery claims on the real Valkey: what each process is told about each target."""

from __future__ import annotations

import uuid

from connectors import redis
from sinks.claims import RedisClaims


def test_claims_tell_fresh_in_hand_resumed_and_sent_apart(stack):
    client = redis.client(stack.urls["REDIS_URL"])
    keys = [f"claim:{uuid.uuid4().hex}:{n}" for n in range(3)]
    first, second = RedisClaims(client, "first"), RedisClaims(client, "second")
    assert first.claim(keys) == ["fresh"] * 3
    assert first.claim(keys) == ["in_flight"] * 3  # a duplicate copy while the first is in hand
    first.confirm(keys[:1])
    first.release(keys[1:2])
    # The first process died: the next one is told what it must (re)send.
    assert second.claim(keys) == ["sent", "fresh", "resumed"]
    assert second.claim(keys) == ["sent", "in_flight", "in_flight"]
    assert 0 < client.ttl(keys[2]) <= 7 * 24 * 3600
