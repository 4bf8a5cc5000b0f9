"""Turns a consumed Kafka message into the item the per-user stages work on.

Notification requests are decoded and validated; user-state records (preferences, devices,
presence) become updates for the user's state, and engagement (what the user did with a
notification) a signal. What cannot be decoded or is invalid becomes a dead letter carrying
the original bytes.
"""

from __future__ import annotations

from datetime import datetime

from kernel import validate
from kernel import records
from kernel.keyed import finished
from kernel.topics import ENGAGEMENT, EVENTS, USER_STATE_TOPICS, codec_for
from schemas import CodecError


class Intake:
    def __init__(self, schema_registry_url: str | None = None) -> None:
        self.codecs = {topic: codec_for(topic, schema_registry_url)
                       for topic in (EVENTS, ENGAGEMENT, *USER_STATE_TOPICS)}

    def item(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes,
             now: datetime, timestamp: tuple[int, int] | None = None) -> dict:
        """`timestamp`: the record's Kafka timestamp as (type, epoch ms); type 0 means it has none."""
        source = records.source(topic, partition, offset, key, value,
                                timestamp[1] if timestamp and timestamp[0] else None)
        try:
            record = self.codecs[topic].decode(value)
        except CodecError as exc:
            return records.rejected(source, "decode", exc.reason)
        # A user is (tenant, user id): items carry both, and the flow keys them by kernel.requests.user_key.
        if topic == ENGAGEMENT:
            return {"kind": "engagement", "user_id": record["user_id"], "tenant": record["tenant"], "record": record}
        if topic != EVENTS:
            return {"kind": "user_state", "topic": topic, "user_id": record["user_id"], "tenant": record["tenant"],
                    "record": record}
        if reason := validate.problem(record, now):
            return records.rejected(source, "validate", reason)
        item = {"kind": "notification", "user_id": record["user_id"], "tenant": record["tenant"],
                "request": validate.clean_text(record), "source": source}
        if validate.is_expired(record, now):
            return finished(item, "expired", f"expired at {record['metadata']['expires_at'].isoformat()}")
        return item

