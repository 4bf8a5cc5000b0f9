"""The records every stage writes besides its own: a DeliveryStatus for each outcome and a
DeadLetter, with the original bytes, for what could not be processed. Each leaves a stage as an
outgoing (topic, key, value) record, keyed by user like everything else."""

from __future__ import annotations

from datetime import datetime

from kernel.requests import user_key
from kernel.topics import DLQ, STATUS

# (topic, key, record): encoded by the topic's codec on the way out.
Outgoing = tuple[str, bytes | None, dict]


def source(topic: str, partition: int, offset: int, key: bytes | None, value: bytes,
           timestamp_ms: int | None = None) -> dict:
    """Where a consumed record came from: what a dead letter carries back to it."""
    return {"topic": topic, "partition": partition, "offset": offset, "key": key, "value": value,
            "timestamp_ms": timestamp_ms}


def rejected(source: dict, stage: str, reason: str) -> dict:
    """The item a stage passes on for a record it cannot process: finished as a dead letter."""
    return {"kind": "notification", "user_id": None, "request": None, "source": source,
            "outcome": "dead_letter", "stage": stage, "reason": reason}


def dead_letter(item: dict, now: datetime, *, attempts: int = 1, first_seen: datetime | None = None) -> Outgoing:
    """The DeadLetter of a rejected item, keyed as its source was, so a replay lands where it came from."""
    source = item["source"]
    return (DLQ, source["key"], {
        "original": source["value"], "original_key": source["key"], "topic": source["topic"],
        "partition": source["partition"], "offset": source["offset"], "stage": item["stage"],
        "reason": item["reason"], "attempts": attempts, "first_seen": first_seen or now, "last_seen": now,
        "schema": None})


def status(*, notification_id: str, user_id: str, tenant: str, state: str, channel: str | None, category: str,
           campaign_id: str | None, variant: str | None, created_at: datetime, at: datetime, attempt: int = 0,
           device: dict | None = None, provider: str | None = None, reason: str | None = None,
           cohort: str | None = None, send_time: str | None = None) -> dict:
    """A DeliveryStatus: what was decided or done for one notification (and channel, and device), and why;
    `cohort` (treated or holdout) and `send_time` (optimal) for the readouts of what is learned."""
    return {"notification_id": notification_id, "user_id": user_id, "channel": channel,
            "device_id": device["device_id"] if device else None, "status": state, "attempt": attempt,
            "provider": provider, "reason": reason, "category": category, "campaign_id": campaign_id,
            "variant": variant, "platform": device["platform"] if device else None, "created_at": created_at,
            "at": at, "tenant": tenant, "cohort": cohort, "send_time": send_time}


def job_id(job: dict, channel: str) -> str:
    """The id of a DeliveryJob (or of a job `job` moves to on `channel`): one send per user, channel and revision."""
    return f"{job['notification_id']}:{user_key(job['tenant'], job['user_id'])}:{channel}:{job['revision']}"


def status_record(status: dict, fallback_key: bytes | None = None) -> Outgoing:
    """Keyed by the user; a request that never reached a user keeps its own key."""
    return (STATUS, user_key(status["tenant"], status["user_id"]).encode() if status["user_id"] else fallback_key,
            status)
