"""Talking to a running flow through the real broker: publish inputs, wait for its outputs."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from connectors.kafka import TopicReader, produce_all, producer
from kernel.requests import device_record, notification_request, routing_key
from kernel.requests import preferences_record as preferences  # noqa: F401 (re-exported for tests)
from kernel.topics import OUTBOX_TOPICS, codec_for
from notifyflow.processes import FlowProcess, delivery_flow
from schemas import CodecError

from gateway_harness import in_app_job  # noqa: F401 (one builder for every test dir)

OUTPUT_TOPICS = ["notify.status", "notify.dlq", *OUTBOX_TOPICS]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def bootstrap() -> str:
    return os.environ["KAFKA_BOOTSTRAP_SERVERS"]


def publish(topic: str, records: list[dict]) -> None:
    codec = codec_for(topic)
    produce_all(producer(bootstrap()), topic, [(routing_key(r), codec.encode(r)) for r in records])


def publish_raw(topic: str, key: bytes, value: bytes) -> None:
    produce_all(producer(bootstrap()), topic, [(key, value)])


def request(user_id: str, title: str, body: str = "", **fields) -> dict:
    """A complete NotificationRequested, every optional field at its Avro default unless given."""
    content = {"image_url": None, "icon": None, "badge": None, "actions": [], "title": title, "body": body,
               **fields.pop("content", {})}
    metadata = fields.pop("metadata", {})
    record = notification_request(user_id=user_id, title=title, body=body, **fields)
    record["content"] = content
    record["metadata"] = {"expires_at": None, "deep_link": None, "payload": {}, "campaign_id": None,
                          **record["metadata"], **metadata}
    for name, default in (("audience", None), ("channels", []), ("scheduled_at", None), ("idempotency_key", None),
                          ("locale", None), ("template_id", None), ("template_vars", {})):
        record.setdefault(name, default)
    return record


def device(user_id: str, device_id: str, token: str, platform: str = "android") -> dict:
    return device_record(user_id, device_id, platform, token=token, app_version="1.0")


def user_of(topic: str, value: dict) -> str | None:
    if topic == "notify.dlq":
        return (value["original_key"] or b"").decode(errors="replace")
    return value["user_id"]


class Outputs:
    """Everything the flows write, decoded, read from the beginning and kept as it arrives."""

    def __init__(self, *flows: FlowProcess) -> None:
        self.flows = flows  # checked when a wait times out: a flow that died says why
        self.reader = TopicReader(bootstrap(), OUTPUT_TOPICS)
        self.seen: list[tuple[str, dict]] = []

    def wait_for(self, users: set[str], done: Callable[[list[tuple[str, dict]]], bool],
                 timeout_s: float = 45.0) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout_s
        while True:
            for message in self.reader.poll(0.5):
                try:
                    self.seen.append((message.topic(), codec_for(message.topic()).decode(message.value())))
                except CodecError:
                    pass  # bytes a test planted to be rejected: not the flow's output
            mine = [(topic, value) for topic, value in self.seen if user_of(topic, value) in users]
            if done(mine):
                return mine
            if time.monotonic() > deadline:
                for flow in self.flows:
                    flow.check()
                raise AssertionError(f"timed out waiting for the flow; it wrote for {users}: {mine}")

    def settle(self) -> None:
        """Wait until the flow has caught up with what was published so far.

        User state and notifications come from different topics, so nothing orders them; a
        fresh user's notification published after the state, and seen out the other end, shows
        the flow has read past that state.
        """
        sentinel = unique("sentinel")
        publish("notify.events", [request(sentinel, "sentinel")])
        self.wait_for({sentinel}, lambda found: bool(found))
        time.sleep(0.2)

    def close(self) -> None:
        self.reader.close()


def jobs(outputs: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    return [(topic, value) for topic, value in outputs if topic.startswith("notify.outbox.")]


def statuses(outputs: list[tuple[str, dict]]) -> list[dict]:
    return [value for topic, value in outputs if topic == "notify.status"]


def live_events(pubsub, seconds: float = 1.0) -> list[dict]:
    """The JSON events a Redis subscription receives within `seconds`."""
    found, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            found.append(json.loads(message["data"]))
    return found


@contextmanager
def delivering(workdir: Path, env: dict[str, str], *routes: tuple[str, str]):
    """The notification flow and the delivery flows of the (channel, lane) routes, run as deployed with
    `env`, and the Outputs of them all (`outputs.flows`: the notification flow, then the routes' in
    order); the delivery flows start once the notification flow has read what came before."""
    notifications = FlowProcess("notifications", workdir / "n", workdir / "notifications.log")
    deliveries = [FlowProcess(delivery_flow(channel, lane), workdir / f"{channel}-{lane}",
                              workdir / f"{channel}-{lane}.log", env=env) for channel, lane in routes]
    outputs = Outputs(notifications, *deliveries)
    try:
        notifications.start()
        outputs.settle()
        for delivery in deliveries:
            delivery.start()
        yield outputs
    finally:
        for flow in (notifications, *deliveries):
            flow.stop()
        outputs.close()
