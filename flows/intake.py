"""Turns a consumed Kafka message into the item the per-user stages work on.

Notification requests are decoded and validated; user-state records (preferences, devices,
presence) become updates for the user's state. What cannot be decoded or is invalid
becomes a dead letter carrying the original bytes.
"""

from __future__ import annotations

from datetime import datetime

from flows import validate
from flows.steps import finished
from infra.topics import codec_for
from schemas import CodecError

EVENTS = "notify.events"
USER_STATE_TOPICS = ("notify.preferences", "notify.devices", "notify.presence")


class Intake:
    def __init__(self, schema_registry_url: str | None = None) -> None:
        self.codecs = {topic: codec_for(topic, schema_registry_url) for topic in (EVENTS, *USER_STATE_TOPICS)}

    def item(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes,
             now: datetime, timestamp: tuple[int, int] | None = None) -> dict:
        """`timestamp`: the record's Kafka timestamp as (type, epoch ms); type 0 means it has none."""
        source = {"topic": topic, "partition": partition, "offset": offset, "key": key, "value": value,
                  "timestamp_ms": timestamp[1] if timestamp and timestamp[0] else None}
        try:
            record = self.codecs[topic].decode(value)
        except CodecError as exc:
            return dead_letter(source, "decode", exc.reason)
        if topic != EVENTS:
            return {"kind": "user_state", "topic": topic, "user_id": record["user_id"], "record": record}
        if reason := validate.problem(record, now):
            return dead_letter(source, "validate", reason)
        item = {"kind": "notification", "user_id": record["user_id"], "request": validate.clean_text(record),
                "source": source}
        if validate.is_expired(record, now):
            return finished(item, "expired", f"expired at {record['metadata']['expires_at'].isoformat()}")
        return item


def dead_letter(source: dict, stage: str, reason: str) -> dict:
    return {"kind": "notification", "user_id": None, "request": None, "source": source,
            "outcome": "dead_letter", "stage": stage, "reason": reason}
