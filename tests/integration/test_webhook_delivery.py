"""The webhook delivery flow against a receiver that verifies Standard Webhooks signatures:
retries with backoff, a circuit that opens, fallback to the next channel, dead letters after
the last attempt, no duplicate after a crash and a full replay, and signatures that stop replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from standardwebhooks import Webhook

from kernel.topics import codec_for
from notifyflow.processes import FlowProcess, delivery_flow
from notifyflow.stack import free_port
from peers.webhook import WebhookReceiver
from sinks.webhook import payload

from flow_harness import Outputs, jobs, publish_raw, statuses, unique

TOPIC = "notify.outbox.webhook.normal"


def job(user: str, tenant: str, **fields) -> dict:
    notification_id = unique("n")
    minimal = {"job_id": f"{notification_id}:{user}:webhook:0", "notification_id": notification_id, "revision": 0,
               "request_ids": [notification_id], "user_id": user, "tenant": tenant, "channel": "webhook",
               "lane": "normal", "kind": "single", "priority": "normal", "type": "info", "category": "ci",
               "title": "Build #42 failed", "body": "3 tests failed", "html_body": "3 tests failed", "locale": "en",
               "collapse_key": notification_id, "created_at": datetime.now(UTC), **fields}
    codec = codec_for(TOPIC)
    return codec.decode(codec.encode(minimal))


def send(*sent: dict) -> None:
    for one in sent:
        publish_raw(TOPIC, one["user_id"].encode(), codec_for(TOPIC).encode(one))


def endpoint(stack, tenant: str, url: str, secret: str) -> None:
    with psycopg.connect(stack.urls["DATABASE_URL"], autocommit=True) as db:
        db.execute("INSERT INTO webhook_endpoints (tenant, url, secret) VALUES (%s, %s, %s)", (tenant, url, secret))


@pytest.fixture
def receiver():
    with WebhookReceiver() as running:
        yield running


def flow(tmp_path, name: str) -> FlowProcess:
    return FlowProcess(delivery_flow("webhook", "normal"), tmp_path / f"{name}-recovery", tmp_path / f"{name}.log",
                       env={"NOTIFYFLOW_RETRY_DELAYS": "0.5,1"})


def test_retries_then_delivers_once_even_after_a_crash_and_full_replay(stack, receiver, tmp_path):
    tenant, user = unique("acme"), unique("ana")
    endpoint(stack, tenant, receiver.url, receiver.secret)
    receiver.fail(503, times=2, retry_after="1")
    sent = job(user, tenant, deep_link="https://ci.example.com/42")
    delivery, outputs = flow(tmp_path, "first"), None
    try:
        delivery.start()
        outputs = Outputs(delivery)
        send(sent)
        found = outputs.wait_for({user}, lambda f: any(s["status"] == "sent" for s in statuses(f)))
        [received] = receiver.wait_for(1)
        delivery.kill()
        # A full replay: a fresh recovery store reads the outbox from the beginning.
        delivery = flow(tmp_path, "replay").start()
        replayed = outputs.wait_for({user}, lambda f: any(s["status"] == "deduplicated" for s in statuses(f)))
    finally:
        delivery.stop()
        if outputs:
            outputs.close()
    assert [(s["status"], s["attempt"]) for s in statuses(found)] == [("retried", 1), ("retried", 2), ("sent", 3)]
    assert received["id"] == sent["job_id"]
    assert received["body"] == {"type": "notification.created", "data": {
        "id": sent["notification_id"], "revision": 0, "user_id": user, "title": "Build #42 failed",
        "body": "3 tests failed", "category": "ci", "priority": "normal", "type": "info",
        "deep_link": "https://ci.example.com/42", "payload": {}, "created_at": sent["created_at"].isoformat()}}
    assert receiver.duplicates == 0 and receiver.rejected == 0 and len(receiver.received) == 1
    assert [s["status"] for s in statuses(replayed)][-1] == "deduplicated"


def test_a_dead_endpoint_opens_the_circuit_and_falls_back_to_the_next_channel(stack, tmp_path):
    tenant = unique("gone")
    endpoint(stack, tenant, f"http://127.0.0.1:{free_port()}/hooks", "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMw==")
    users = [unique("bo") for _ in range(7)]
    fallback = [{"channel": "email", "after_seconds": 300, "address": "bo@example.com"}]
    sent = [job(user, tenant, fallback=fallback) for user in users]
    delivery = flow(tmp_path, "dead").start()
    outputs = Outputs(delivery)
    try:
        send(*sent)
        # Statuses and the moved jobs are on different topics, so either may be read first: wait for both.
        found = outputs.wait_for(set(users), lambda f: len([s for s in statuses(f) if s["status"] == "failed"]) >= 7
                                 and len([t for t, _ in jobs(f) if t == "notify.outbox.email.normal"]) >= 7,
                                 timeout_s=60)
    finally:
        delivery.stop()
        outputs.close()
    # Connection refused is transient: retried, until five failures in the window open the circuit,
    # which then hands the waiting retries to their next channel instead of hammering a dead endpoint.
    retried = [s for s in statuses(found) if s["status"] == "retried"]
    assert len(retried) >= 5 and all(s["reason"].startswith("ConnectError") for s in retried)
    failed = [s for s in statuses(found) if s["status"] == "failed"]
    assert [s["reason"] for s in failed] == [f"circuit open for webhook:{tenant}"] * 7  # this tenant's only
    # Every job moves to the next channel of its chain, with the address it needs.
    moved = [j for t, j in jobs(found) if t == "notify.outbox.email.normal"]
    assert sorted(j["user_id"] for j in moved) == sorted(users)
    assert all(j["channel"] == "email" and j["address"] == "bo@example.com" and j["fallback"] == [] for j in moved)
    # Not lost, so not dead-lettered: a replay from the dead-letter topic would tell them twice.
    assert not [v for t, v in found if t == "notify.dlq"]


def test_a_captured_webhook_replayed_later_or_tampered_with_is_refused(receiver):
    """What the sink signs is what a Standard Webhooks receiver accepts, once, and only fresh."""
    sent = job(unique("ana"), "acme")
    body = payload(sent)

    def post(at: datetime, content: str = body, webhook_id: str = sent["job_id"]) -> int:
        headers = {"content-type": "application/json", "webhook-id": webhook_id,
                   "webhook-timestamp": str(int(at.timestamp())),
                   "webhook-signature": Webhook(receiver.secret).sign(webhook_id, at, content)}
        return httpx.post(receiver.url, content=body, headers=headers).status_code

    now = datetime.now(UTC)
    assert post(now) == 204 and len(receiver.received) == 1
    assert post(now) == 204 and receiver.duplicates == 1 and len(receiver.received) == 1  # same id: dropped
    assert post(now - timedelta(minutes=10), webhook_id="old") == 401  # captured long ago: too old
    assert post(now + timedelta(minutes=10), webhook_id="future") == 401  # or stamped ahead
    assert post(now, content=body.replace("Build", "Bill"), webhook_id="tampered") == 401  # signed other bytes
    assert receiver.rejected == 3 and len(receiver.received) == 1
