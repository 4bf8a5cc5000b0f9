"""The notification flow and the in-app delivery flow together, run as deployed: a request
becomes a notification-center row and a live event on the user's channel, exactly once even
when the delivery flow replays its whole input."""

from __future__ import annotations

import psycopg

from connectors import redis as redis_connector
from notifyflow.processes import FlowProcess, delivery_flow

from flow_harness import Outputs, live_events, publish, publish_raw, request, statuses, unique


def test_requests_reach_the_notification_center_once(stack, tmp_path):
    user, bad_key = unique("ivy"), unique("bad")
    pubsub = redis_connector.client(stack.urls["REDIS_URL"]).pubsub()
    pubsub.subscribe(redis_connector.user_channel("default", user))
    notifications = FlowProcess("notifications", tmp_path / "n-recovery", tmp_path / "notifications.log")
    delivery = FlowProcess(delivery_flow("in_app", "normal"), tmp_path / "d-recovery", tmp_path / "delivery.log")
    outputs = Outputs(delivery)
    try:
        notifications.start()
        delivery.start()
        publish("notify.events", [request(user, "Bob sent you a message", "Lunch?", category="messages"),
                                  request(user, "Bob sent you a message", "Lunch?", category="messages")])
        publish_raw("notify.outbox.in_app.normal", bad_key.encode(), b"not a job")
        found = outputs.wait_for({user, bad_key}, lambda f: len([s for s in statuses(f) if s["status"] == "delivered"])
                                 >= 2 and any(t == "notify.dlq" for t, _ in f), timeout_s=60)
        live = live_events(pubsub, 2)
        # A replay of everything the delivery flow ever read: a fresh recovery store.
        delivery.stop()
        delivery = FlowProcess(delivery_flow("in_app", "normal"), tmp_path / "replay", tmp_path / "replay.log")
        delivery.start()
        outputs.wait_for({user}, lambda f: len([s for s in statuses(f) if s["status"] == "delivered"]) >= 4,
                         timeout_s=60)
        replayed = live_events(pubsub, 2)
    finally:
        notifications.stop()
        delivery.stop()
        outputs.close()
    assert [(e["event"], e["notification"]["body"]) for e in live] == [
        ("notification.created", "Lunch?"), ("notification.updated", "2 new messages")]
    assert replayed == []
    with psycopg.connect(stack.urls["DATABASE_URL"]) as db:
        rows = db.execute("SELECT body, revision, merge_count FROM notifications WHERE user_id = %s",
                          (user,)).fetchall()
    assert rows == [("2 new messages", 1, 2)]
    [dead] = [v for t, v in found if t == "notify.dlq"]
    assert (dead["stage"], dead["original"], dead["topic"]) == ("decode_job", b"not a job", "notify.outbox.in_app.normal")
