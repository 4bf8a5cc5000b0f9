"""Turns a consumed DeliveryStatus or EngagementEvent into one raw analytics row.

The row carries a pseudonymous user key and no device ids, addresses, tokens or content;
provider reasons are kept for "top failing reasons" with anything shaped like an address or
a phone number masked. A preferences record with `deleted` set (the platform's erasure
tombstone) becomes an erasure of the user's rows. Undecodable records become dead letters.
"""

from __future__ import annotations

from datetime import datetime

from analytics.pseudonym import UserKeys
from kernel import records
from kernel.logs import redact
from kernel.topics import ENGAGEMENT, PREFERENCES, STATUS, codec_for
from schemas import CodecError

TOPICS = (STATUS, ENGAGEMENT, PREFERENCES)
COLUMNS = ("at", "created_at", "kind", "status", "notification_id", "user_key", "key_version", "channel",
           "category", "campaign_id", "variant", "platform", "provider", "reason", "action_id", "attempt",
           "tenant", "source_topic", "source_partition", "source_offset", "ingested_at")
_TOPIC, _PARTITION = COLUMNS.index("source_topic"), COLUMNS.index("source_partition")


def masked(reason: str | None) -> str:
    """Masked as log lines are (addresses, numbers, tokens, secrets), and bounded."""
    return redact(reason or "")[:500]


class Rows:
    def __init__(self, keys: UserKeys, schema_registry_url: str | None = None) -> None:
        self.keys = keys
        self.codecs = {topic: codec_for(topic, schema_registry_url) for topic in TOPICS}

    def item(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes, now: datetime) -> dict:
        """{"row": [...]} in COLUMNS order, {"erase": [(version, user key), ...]}, {} for records
        that carry nothing for analytics, or a dead letter."""
        source = records.source(topic, partition, offset, key, value)
        try:
            record = self.codecs[topic].decode(value)
        except CodecError as exc:
            return records.rejected(source, "analytics_decode", exc.reason)
        if topic == PREFERENCES:
            return {"erase": self.keys.every_version(record["user_id"], now, record["tenant"])} if record["deleted"] \
                else {}
        version, user_key = self.keys.of(record["user_id"], record["at"], record.get("tenant"))
        if topic == STATUS:
            kind, status, created_at, action_id = "status", record["status"], record["created_at"], None
        else:
            kind, status, created_at, action_id = "engagement", record["action"], record["at"], record["action_id"]
        return {"row": [
            record["at"], created_at, kind, status, record["notification_id"], user_key, version,
            record["channel"] or "", record["category"] or "", record["campaign_id"] or "", record["variant"] or "",
            record.get("platform") or "", record.get("provider") or "", masked(record.get("reason")),
            action_id or "", record.get("attempt", 0), record.get("tenant") or "", topic, partition, offset, now]}


def source_partition(item: dict) -> str:
    """The batching key: rows of one source partition stay in read order, batch after batch."""
    if "row" in item:
        return f"{item['row'][_TOPIC]}:{item['row'][_PARTITION]}"
    return "erasures"
