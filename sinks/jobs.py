"""What every delivery flow does around its channel's sink: decode the outbox jobs, read how the user
wants them presented, and say what became of each job (and device) as a DeliveryStatus."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from kernel import records
from schemas import AvroCodec, CodecError

# The Presentation record's own defaults (schemas/DeliveryJob.avsc): what a job without one means.
DEFAULT_PRESENTATION = MappingProxyType({"sound": True, "vibration": True, "auto_dismiss": True,
                                         "duration_seconds": 6})


def decode(codec: AvroCodec, topic: str, partition: int, offset: int, key: bytes | None, value: bytes) -> dict:
    source = records.source(topic, partition, offset, key, value)
    try:
        return {"job": codec.decode(value), "source": source}
    except CodecError as exc:
        return records.rejected(source, "decode_job", exc.reason)


def presentation(job: dict) -> Mapping:
    """The user's presentation preferences for the job (push sound and vibration, toasts); the
    defaults for a user who never chose, whose jobs carry none."""
    return job["presentation"] or DEFAULT_PRESENTATION


def status(job: dict, state: str, now: datetime, *, attempt: int = 1, device: dict | None = None,
           provider: str | None = None, reason: str | None = None) -> dict:
    """A DeliveryStatus for one job (and device) on its channel."""
    return records.status(notification_id=job["notification_id"], user_id=job["user_id"], tenant=job["tenant"],
                          state=state, channel=job["channel"], category=job["category"],
                          campaign_id=job["campaign_id"], variant=job["variant"], created_at=job["created_at"],
                          at=now, attempt=attempt, device=device, provider=provider, reason=reason)
