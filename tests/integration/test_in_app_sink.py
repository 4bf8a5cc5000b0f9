"""The in-app sink against the real PostgreSQL and Valkey: rows in the notification center,
events on the user's channel, revisions applied in order, replays invisible."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from flow_harness import in_app_job, live_events, unique

from connectors import redis as redis_connector
from sinks.in_app import InAppSink


@pytest.fixture
def sink(stack):
    connection = psycopg.connect(stack.urls["DATABASE_URL"], autocommit=True)
    redis = redis_connector.client(stack.urls["REDIS_URL"])
    yield InAppSink(connection, redis)
    connection.close()
    redis.close()


def listen(stack, user: str):
    pubsub = redis_connector.client(stack.urls["REDIS_URL"]).pubsub()
    pubsub.subscribe(redis_connector.user_channel("default", user))
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    return pubsub


def center(sink, user: str) -> list[tuple]:
    return sink.connection.execute(
        "SELECT id, title, body, revision, merge_count, read_at IS NULL FROM notifications WHERE user_id = %s "
        "ORDER BY created_at", (user,)).fetchall()


def test_a_job_lands_in_the_center_and_on_every_open_device(stack, sink):
    user = unique("ana")
    pubsub = listen(stack, user)
    first = in_app_job(user, unique("n"), image_url="https://cdn.example.com/a.png")
    statuses = sink.deliver([first], datetime.now(UTC))
    assert [(s["status"], s["channel"], s["user_id"]) for s in statuses] == [("delivered", "in_app", user)]
    assert center(sink, user) == [(first["notification_id"], "Bob sent you a message", "Lunch?", 0, 1, True)]
    [event] = live_events(pubsub)
    assert event["event"] == "notification.created" and event["notification"]["id"] == first["notification_id"]
    assert event["notification"]["image_url"] == "https://cdn.example.com/a.png"
    assert "address" not in event["notification"] and "devices" not in event["notification"]


def test_merges_update_the_row_and_replays_change_nothing(stack, sink):
    user, notification = unique("ben"), unique("n")
    pubsub = listen(stack, user)
    original = in_app_job(user, notification)
    update = in_app_job(user, notification, revision=2, body="3 new messages",
                 merge={"strategy": "count", "count": 3, "items": ["a", "b", "c"]})
    stale = in_app_job(user, notification, revision=1, body="2 new messages",
                merge={"strategy": "count", "count": 2, "items": ["a", "b"]})
    sink.deliver([original], datetime.now(UTC))
    sink.connection.execute("UPDATE notifications SET read_at = now() WHERE user_id = %s", (user,))
    sink.deliver([update, stale], datetime.now(UTC))  # the older revision arrives late, on a slower lane
    sink.deliver([original, update], datetime.now(UTC))  # a replay after a crash
    assert center(sink, user) == [(notification, "Bob sent you a message", "3 new messages", 2, 3, True)]
    events = live_events(pubsub)
    assert [(e["event"], e["notification"]["revision"]) for e in events] == [
        ("notification.created", 0), ("notification.updated", 2)]
    assert events[1]["event_seq"] > events[0]["event_seq"]


def test_the_users_presentation_travels_with_the_notification(stack, sink):
    user, chosen_id, default_id = unique("cy"), unique("n"), unique("n")
    pubsub = listen(stack, user)
    chosen = in_app_job(user, chosen_id, presentation={"sound": False, "auto_dismiss": False, "duration_seconds": 12})
    sink.deliver([chosen, in_app_job(user, default_id)], datetime.now(UTC))
    # The toasts read it from the live event, the notification center from the stored content.
    expected = {chosen_id: {"sound": False, "vibration": True, "auto_dismiss": False, "duration_seconds": 12},
                default_id: None}  # never chosen: the client's defaults
    stored = sink.connection.execute("SELECT id, content->'presentation' FROM notifications WHERE user_id = %s",
                                     (user,)).fetchall()
    assert dict(stored) == expected
    assert {e["notification"]["id"]: e["notification"]["presentation"] for e in live_events(pubsub)} == expected
