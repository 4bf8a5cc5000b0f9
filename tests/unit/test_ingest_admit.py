"""gateway/ingest.py without a server: what the senders' HTTP API accepts, refuses and why."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flow_items import NOW

from gateway.ingest import Refused, admit, parse_items
from gateway.ingest_store import Sender
from kernel.grants import AUDIENCE_KINDS, Grant
from kernel.topics import EVENTS, codec_for

SENDER = Sender("0123456789abcdef", "shop", "orders", 600)
GRANTS = {("shop", "orders"): Grant("shop", "orders", ("orders",), "high", AUDIENCE_KINDS)}
CODEC = codec_for(EVENTS)


def posted(**fields) -> dict:
    return {"user_id": "ana", "type": "info", "category": "orders", "priority": "normal",
            "content": {"title": "Shipped", "body": "Tuesday"}, "metadata": {"created_at": NOW.isoformat()},
            **fields}


def test_an_accepted_item_is_the_keys_tenant_and_sender_with_id_and_avro_bytes():
    record, value = admit(posted(), SENDER, CODEC, GRANTS, NOW)
    assert (record["tenant"], record["metadata"]["source_app"], record["metadata"]["created_at"]) == (
        "shop", "orders", NOW)
    assert record["id"] and CODEC.decode(value) == record


@pytest.mark.parametrize("item, reason", [
    ("text", "a notification must be a JSON object"),
    (posted(metadata=[]), "metadata must be an object"),
    (posted(tenant="other"), "tenant 'other' is not the API key's ('shop')"),
    (posted(tenant="shop:b"), "tenant 'shop:b' must be letters, digits, '.', '_' and '-'"),
    (posted(metadata={"source_app": "billing"}), "metadata.source_app 'billing' is not the API key's ('orders')"),
    (posted(priority="urgent"), "field priority"),
    (posted(metadata={"created_at": "yesterday"}), "not a NotificationRequested: Invalid isoformat string"),
    (posted(user_id=None), "exactly one of user_id and audience must be set"),
    (posted(metadata={"created_at": (NOW + timedelta(hours=1)).isoformat()}), "is in the future"),
    (posted(category="marketing"), "sender orders of tenant shop may not send category marketing"),
    (posted(priority="critical"), "may not send priority critical (granted up to high)"),
    (posted(surprise=1), "surprise"),
])
def test_a_refused_item_says_why_as_the_flow_would(item, reason):
    refusal = admit(item, SENDER, CODEC, GRANTS, NOW)
    assert isinstance(refusal, str) and reason in refusal, refusal


@pytest.mark.parametrize("body, status", [
    (b"{", 400), (b"\xff\xfe\x00", 400), (b"42", 400), (b"[]", 422), (b"[" * 100_000, 400),
    (b"[" + b"{}," * 1000 + b"{}]", 422),
])
def test_bodies_that_are_no_batch_are_refused_not_crashed_on(body, status):
    with pytest.raises(Refused) as refused:
        parse_items(body)
    assert refused.value.status == status


def test_one_object_or_an_array_of_them():
    assert parse_items(b'{"a": 1}') == [{"a": 1}]
    assert parse_items(b'[{"a": 1}, 2]') == [{"a": 1}, 2]
