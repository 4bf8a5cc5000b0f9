"""What every delivery flow does around its channel's sink: decode the outbox jobs, and turn
outcomes into statuses and bad jobs into dead letters."""

from __future__ import annotations

from datetime import datetime

from flows.intake import dead_letter as rejected
from flows.outbox import dead_letter as dead_letter_record
from schemas import AvroCodec, CodecError


def decode(codec: AvroCodec, topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> dict:
    source = {"topic": topic, "partition": partition, "offset": offset, "key": key, "value": value}
    try:
        return {"job": codec.decode(value), "source": source}
    except CodecError as exc:
        return rejected(source, "decode_job", exc.reason)


def status_record(status_value: dict) -> tuple[str, bytes, dict]:
    return ("notify.status", status_value["user_id"].encode(), status_value)


def dead_letter(item: dict, now: datetime) -> tuple[str, bytes | None, dict]:
    return ("notify.dlq", item["source"]["key"], dead_letter_record(item, now))


def status(job: dict, state: str, now: datetime, *, attempt: int = 1, device: dict | None = None,
           provider: str | None = None, reason: str | None = None) -> dict:
    """A DeliveryStatus for one job (and device) on its channel."""
    return {"notification_id": job["notification_id"], "user_id": job["user_id"], "channel": job["channel"],
            "device_id": device["device_id"] if device else None, "status": state, "attempt": attempt,
            "provider": provider, "reason": reason, "category": job["category"], "campaign_id": job["campaign_id"],
            "variant": job["variant"], "platform": device["platform"] if device else None,
            "created_at": job["created_at"], "at": now, "tenant": job["tenant"]}
