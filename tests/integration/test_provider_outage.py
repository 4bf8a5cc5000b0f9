"""A webhook receiver down for a minute (503s, and requests that hang past the client's timeout)
while the webhook delivery flow keeps getting jobs: retries back off, the circuit opens and closes,
jobs with a next channel move there, the others wait and are delivered once the receiver is back,
nothing is lost or delivered twice, and nothing reaches the dead-letter topic (no job ran out of
attempts)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from test_webhook_delivery import endpoint, job, send

from notifyflow.processes import FlowProcess, delivery_flow
from peers.webhook import WebhookReceiver

from flow_harness import Outputs, jobs, statuses, unique

OUTAGE_S = 60.0
DELAYS = (1, 2, 4, 8, 16)  # the default retry policy
pytestmark = pytest.mark.timeout(300)


def test_a_one_minute_outage_loses_nothing(stack, tmp_path):
    tenant = unique("down")
    fallback = [{"channel": "email", "after_seconds": 300, "address": "ops@example.com"}]
    with WebhookReceiver() as receiver:
        endpoint(stack, tenant, receiver.url, receiver.secret)
        delivery = FlowProcess(delivery_flow("webhook", "normal"), tmp_path / "recovery", tmp_path / "flow.log").start()
        outputs = Outputs(delivery)
        try:
            receiver.outage(OUTAGE_S)
            started, waiting, moving = time.monotonic(), [], []
            while time.monotonic() - started < OUTAGE_S * 0.7:  # jobs keep coming during the outage
                waiting.append(job(unique("wai"), tenant))
                moving.append(job(unique("mov"), tenant, fallback=fallback))
                send(waiting[-1], moving[-1])
                time.sleep(4)
            users = {j["user_id"] for j in waiting + moving}
            outputs.wait_for(users, lambda f: sent_or_moved(f) >= users, timeout_s=OUTAGE_S + 120)
            time.sleep(3)  # anything sent twice would show by now
            found = outputs.wait_for(users, lambda f: True)
        finally:
            delivery.stop()
            outputs.close()

    delivered = [hook["body"]["data"]["user_id"] for hook in receiver.received]
    # Every job that had nowhere else to go reached the receiver, once; none was refused a signature.
    assert {j["user_id"] for j in waiting} <= set(delivered)
    assert len(set(delivered)) == len(delivered) and receiver.duplicates == 0 and receiver.rejected == 0
    # Every job with a next channel went to the receiver or (while the circuit was open) to email, never both.
    moved = {j["user_id"] for t, j in jobs(found) if t == "notify.outbox.email.normal"}
    assert {j["user_id"] for j in moving} == moved | {u for u in delivered if u.startswith("mov")}
    assert not moved & set(delivered) and moved
    # Nothing ran out of attempts.
    assert not [v for t, v in found if t == "notify.dlq"]

    mine = sorted(statuses(found), key=lambda s: s["at"])
    held = [s for s in mine if s["status"] == "retried" and s["reason"] == f"circuit open for webhook:{tenant}: waiting"]
    tried = [s for s in mine if s["status"] == "retried" and not s["reason"].startswith("circuit open")]
    assert held and tried  # failed attempts, then waits on the open circuit
    assert {s["reason"].split(" from ")[0] for s in tried} <= {"HTTP 503", "ReadTimeout: "}
    assert any(s["reason"].startswith("ReadTimeout") for s in tried)
    # Backoff: a job's attempts are never closer together than the policy's delays (less 20% jitter).
    for user in {s["user_id"] for s in tried}:
        attempts = [s for s in mine if s["user_id"] == user and (s in tried or s["status"] == "sent")]
        for earlier, later in zip(attempts, attempts[1:]):
            assert later["at"] - earlier["at"] >= timedelta(seconds=0.8 * DELAYS[earlier["attempt"] - 1])
    # The circuit closed again: sends succeeded after the outage.
    sent = [s for s in mine if s["status"] == "sent"]
    assert len(sent) >= len(waiting) and sent[-1]["at"] - mine[0]["at"] >= timedelta(seconds=OUTAGE_S * 0.9)


def sent_or_moved(found) -> set[str]:
    sent = {s["user_id"] for s in statuses(found) if s["status"] == "sent"}
    return sent | {j["user_id"] for t, j in jobs(found) if t == "notify.outbox.email.normal"}
