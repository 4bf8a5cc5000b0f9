"""Publishing what people type or keep in files: notification requests to notify.events and user
state to the compacted topics, keyed like every other producer."""

from __future__ import annotations

from connectors.kafka import produce_all, producer
from kernel.requests import routing_key
from kernel.settings import Settings
from kernel.topics import EVENTS, codec_for
from notifyflow.console import console


def publish_requests(config: Settings, requests: list[dict]) -> None:
    """Publish and wait for the broker's acknowledgements; say what went where."""
    codec = codec_for(EVENTS, config.schema_registry_url)
    records = [(routing_key(request), codec.encode(request)) for request in requests]
    produce_all(producer(config.kafka_bootstrap_servers), EVENTS, records)
    for request in requests:
        console.print(f"sent {request['id']} ({request['priority']}, {request['category']}) "
                      f"to {describe_target(request)}")


def publish_user_state(config: Settings, topic: str, records: list[dict]) -> None:
    codec = codec_for(topic, config.schema_registry_url)
    produce_all(producer(config.kafka_bootstrap_servers), topic,
                [(routing_key(record), codec.encode(record)) for record in records])


def describe_target(request: dict) -> str:
    if request.get("user_id"):
        return request["user_id"]
    audience = request.get("audience") or {}
    if audience.get("user_ids"):
        return ", ".join(audience["user_ids"])
    return f"segment {audience['segment']}" if audience.get("segment") else f"topic {audience.get('topic')}"
