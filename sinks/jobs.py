"""What every delivery flow does around its channel's sink: decode the outbox jobs, hand a
batch to the sink, and turn what comes back into statuses (and bad jobs into dead letters)."""

from __future__ import annotations

from datetime import datetime

from flows.intake import dead_letter
from flows.outbox import dead_letter as dead_letter_record
from schemas import AvroCodec, CodecError


def decode(codec: AvroCodec, topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> dict:
    source = {"topic": topic, "partition": partition, "offset": offset, "key": key, "value": value}
    try:
        return {"job": codec.decode(value), "source": source}
    except CodecError as exc:
        return dead_letter(source, "decode_job", exc.reason)


def deliver(sink, items: list[dict], now: datetime) -> list[tuple[str, bytes | None, dict]]:
    """(topic, key, record) for a batch: a status per job from the sink, a dead letter per bad job."""
    out = [("notify.dlq", item["source"]["key"], dead_letter_record(item, now)) for item in items if "job" not in item]
    jobs = [item["job"] for item in items if "job" in item]
    if jobs:
        out += [("notify.status", status["user_id"].encode(), status) for status in sink.deliver(jobs, now)]
    return out
