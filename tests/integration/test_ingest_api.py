"""The HTTP front door (POST /v1/notifications) on the running gateway, against the real stack: a batch
becomes delivered notifications through the flows; retries with an Idempotency-Key publish nothing
new; invalid items are refused with their reasons; no key, a wrong or revoked key, 401; too many, 429."""

from __future__ import annotations

import os
import time

import httpx
import psycopg
import pytest

from connectors.kafka import read_topic
from kernel.topics import codec_for
from notifyflow.processes import FlowProcess, delivery_flow
from schemas.codec import CodecError

from cli_harness import api_key, notifyflow
from flow_harness import Outputs, statuses, unique

PATH = "/v1/notifications"


def notification(user: str, title: str, **fields) -> dict:
    """What an upstream service posts: the least a request needs (id, time, tenant and sender filled in)."""
    return {"user_id": user, "type": "info", "category": "messages", "priority": "normal",
            "content": {"title": title, "body": "from the HTTP API"}, **fields}


def post(gateway: str, key: str | None, body, **headers) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(gateway + PATH, json=body, headers=headers, timeout=30)


def published(ids: set[str]) -> list[tuple[bytes, dict]]:
    """(key, request) of the requests with these ids on the events topic. Other tests of the session put
    garbage there on purpose (the fuzz test), so what does not decode is none of these."""
    codec, found = codec_for("notify.events"), []
    for message in read_topic(os.environ["KAFKA_BOOTSTRAP_SERVERS"], "notify.events", idle_timeout_s=2):
        try:
            request = codec.decode(message.value())
        except CodecError:
            continue
        if request["id"] in ids:
            found.append((message.key(), request))
    return found


@pytest.fixture(scope="module")
def key(stack):
    return api_key(unique("shop"), "orders")


def test_a_batch_is_accepted_and_delivered_to_the_notification_center(stack, gateway, tmp_path):
    tenant, ana, ben = unique("shop"), unique("ana"), unique("ben")
    key = api_key(tenant, "orders")
    notifications = FlowProcess("notifications", tmp_path / "n", tmp_path / "notifications.log")
    delivery = FlowProcess(delivery_flow("in_app", "normal"), tmp_path / "d", tmp_path / "delivery.log")
    outputs = Outputs(delivery)
    try:
        notifications.start()
        delivery.start()
        response = post(gateway, key, [notification(ana, "Your order shipped"),
                                       notification(ben, "Your order is late", id=unique("order"))])
        assert response.status_code == 202, response.text
        ids = response.json()["ids"]
        found = outputs.wait_for({ana, ben}, lambda f: len([s for s in statuses(f) if s["status"] == "delivered"])
                                 >= 2, timeout_s=90)
    finally:
        notifications.stop()
        delivery.stop()
        outputs.close()
    assert response.json()["accepted"] == 2 and ids[1].startswith("order-")
    assert {s["notification_id"] for s in statuses(found) if s["status"] == "delivered"} == set(ids)
    assert {s["tenant"] for s in statuses(found)} == {tenant}  # the key's tenant, not the default one
    with psycopg.connect(stack.urls["DATABASE_URL"]) as db:
        rows = db.execute("SELECT user_id, title FROM notifications WHERE id = ANY(%s) ORDER BY user_id",
                          (ids,)).fetchall()
    assert rows == [(ana, "Your order shipped"), (ben, "Your order is late")]
    # Keyed like every producer: by the user (tenant and user id).
    [(key, _)] = published({ids[0]})
    assert key == f"{tenant}:{ana}".encode()  # kernel.requests.user_key: the tenant's user


def test_a_retry_with_the_same_idempotency_key_publishes_nothing_new(gateway, key):
    body, retry_key = [notification(unique("cy"), "Receipt")], unique("idem")
    first = post(gateway, key, body, **{"Idempotency-Key": retry_key})
    again = post(gateway, key, body, **{"Idempotency-Key": retry_key})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = post(gateway, key, [notification(unique("cy"), "Another")], **{"Idempotency-Key": retry_key})
    assert other.status_code == 422 and "different body" in other.json()["error"]
    [(_, request)] = published(set(first.json()["ids"]))  # one request published, not two
    assert request["metadata"]["source_app"] == "orders"


def test_invalid_items_are_refused_each_with_its_reason_and_nothing_is_published(gateway, key):
    user = unique("dee")
    good = notification(user, "Fine", id=unique("good"))
    response = post(gateway, key, [
        good,
        notification(user, "Click", content={"title": "Click", "body": "", "image_url": "javascript:alert(1)"}),
        notification(user, "Urgent", priority="urgent"),
        notification(user, "Spoofed", tenant="someone-else"),
        {"user_id": user},
        "not an object",
        notification(user, "Ambiguous", tenant="shop:b"),  # would make tenant:user keys ambiguous
    ])
    assert response.status_code == 422
    reasons = {r["index"]: r["reason"] for r in response.json()["rejected"]}
    assert reasons[1] == "content.image_url: scheme 'javascript' is not allowed"  # as the flow says it
    assert "priority" in reasons[2]
    assert reasons[3].startswith("tenant 'someone-else' is not the API key's")
    assert reasons[6].startswith("tenant 'shop:b' must be letters, digits")
    assert set(reasons) == {1, 2, 3, 4, 5, 6}
    assert published({good["id"]}) == []
    for body in (b"{not json", b"42"):
        bad = httpx.post(gateway + PATH, content=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert bad.status_code == 400, bad.text


def test_no_key_a_wrong_key_or_a_revoked_key_is_401(gateway):
    revoked = api_key(unique("shop"), "orders")
    key_id = revoked.split("_")[1]
    assert post(gateway, revoked, notification("u", "Hi")).status_code == 202
    assert notifyflow("keys", "revoke", key_id).returncode == 0
    forged = revoked[:-4] + ("AAAA" if not revoked.endswith("AAAA") else "BBBB")
    for key in (None, "nfk_nonsense", forged, revoked):
        response = post(gateway, key, notification("u", "Hi"))
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer", key
    listed = notifyflow("keys", "list")
    assert key_id in listed.stdout and revoked not in listed.stdout  # the key itself is never shown again


def test_over_the_keys_rate_is_429_with_retry_after(gateway):
    key = api_key(unique("shop"), "orders", per_minute=3)
    # Sent at the start of a minute: the key's window is a clock minute, and the test must not straddle two.
    time.sleep(60 - time.time() % 60 if time.time() % 60 > 50 else 0)
    assert post(gateway, key, [notification(unique("eve"), f"n{i}") for i in range(2)]).status_code == 202
    over = post(gateway, key, [notification(unique("eve"), f"m{i}") for i in range(2)])
    assert over.status_code == 429
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert post(gateway, key, notification(unique("eve"), "last")).status_code == 202  # what is left of the minute
    too_big = post(gateway, key, [notification(unique("eve"), f"b{i}") for i in range(4)])
    assert too_big.status_code == 422 and "more than this key may send in a minute" in too_big.json()["error"]


def test_a_request_outside_the_senders_grant_is_refused_with_the_reason(gateway):
    tenant = unique("shop")
    granted = notifyflow("senders", "grant", tenant, "orders", "--category", "orders", "--max-priority", "normal")
    assert granted.returncode == 0, granted.stderr
    key = api_key(tenant, "orders")
    deadline = time.monotonic() + 30  # the gateway re-reads grants every few seconds
    while True:
        response = post(gateway, key, notification(unique("fay"), "Sale", category="marketing"))
        if response.status_code == 422 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.json()["rejected"][0]["reason"] == (
        f"sender orders of tenant {tenant} may not send category marketing (granted: orders)")
    assert post(gateway, key, notification(unique("fay"), "Shipped", category="orders")).status_code == 202
