"""Turns consumed DeliveryStatus and EngagementEvent records into raw analytics rows.

The row carries a pseudonymous user key (under the key of the notification's creation time, so one
notification's rows stay together across a key rotation) and no device ids, addresses, tokens or content;
provider reasons are kept for "top failing reasons" with anything shaped like an address or
a phone number masked. A preferences record with `deleted` set (the platform's erasure
tombstone) becomes an erasure of the user's rows. Undecodable records become dead letters.

The flow hands over its records a batch at a time, and the rows of each source partition leave
as one item, in read order, with their times as int milliseconds since the epoch (what the
DateTime64(3) columns store): per record, only decoding and building its row remain.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from analytics.pseudonym import UserKeys
from connectors.kafka import Consumed
from kernel import records
from kernel.logs import redact
from kernel.topics import ENGAGEMENT, PREFERENCES, STATUS, codec_for
from schemas import CodecError
from schemas.writer import millis

TOPICS = (STATUS, ENGAGEMENT, PREFERENCES)
COLUMNS = ("at", "created_at", "kind", "status", "notification_id", "user_key", "key_version", "channel",
           "category", "campaign_id", "variant", "platform", "provider", "reason", "action_id", "attempt",
           "tenant", "cohort", "send_time", "source_topic", "source_partition", "source_offset", "ingested_at")
TIMES = tuple(COLUMNS.index(c) for c in ("at", "created_at", "ingested_at"))
_TOPIC, _PARTITION = COLUMNS.index("source_topic"), COLUMNS.index("source_partition")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=4096)  # reasons repeat (a provider's few errors)
def _masked(reason: str) -> str:
    return redact(reason)[:500]


def masked(reason: str | None) -> str:
    """Masked as log lines are (addresses, numbers, tokens, secrets), and bounded."""
    return _masked(reason) if reason else ""


# The fields of the records rows are made of, as AvroCodec.decode_values gives them (Rows checks them).
STATUS_FIELDS = ("notification_id", "user_id", "channel", "device_id", "status", "attempt", "provider", "reason",
                 "category", "campaign_id", "variant", "platform", "created_at", "at", "tenant", "cohort", "send_time")
ENGAGEMENT_FIELDS = ("notification_id", "user_id", "action", "action_id", "device_id", "channel", "at", "campaign_id",
                     "variant", "category", "created_at", "tenant")


class Rows:
    def __init__(self, keys: UserKeys, schema_registry_url: str | None = None) -> None:
        self.keys = keys
        self.codecs = {topic: codec_for(topic, schema_registry_url) for topic in TOPICS}
        for topic, fields in ((STATUS, STATUS_FIELDS), (ENGAGEMENT, ENGAGEMENT_FIELDS)):
            if self.codecs[topic].field_names != fields:
                raise RuntimeError(f"the schema of {topic} changed its fields: rows.py reads {fields}")

    def items(self, messages: Iterable[Consumed], now: datetime) -> list[dict]:
        """In read order: {"rows": [row, ...]} (tuples in COLUMNS order) per source partition,
        {"erase": [(version, user key), ...]} per erasure tombstone, and dead letters."""
        out, chunks, now_ms = [], {}, millis(now)
        for message in messages:
            topic, partition, offset = message.topic, message.partition, message.offset
            try:
                if topic == PREFERENCES:
                    record = self.codecs[topic].decode(message.value)
                else:
                    values = self.codecs[topic].decode_values(message.value)
            except CodecError as exc:
                source = records.source(topic, partition, offset, message.key, message.value)
                out.append(records.rejected(source, "analytics_decode", exc.reason))
                continue
            if topic == PREFERENCES:
                if record["deleted"]:
                    out.append({"erase": self.keys.every_version(record["user_id"], now, record["tenant"])})
                continue
            rows = chunks.get((topic, partition))
            if rows is None:
                rows = chunks[topic, partition] = []
                out.append({"rows": rows})
            rows.append(self.row(topic, partition, offset, values, now_ms))
        return out

    def row(self, topic: str, partition: int, offset: int, values: tuple, now_ms: int) -> tuple:
        if topic == STATUS:
            (notification_id, user_id, channel, _, status, attempt, provider, reason, category, campaign_id,
             variant, platform, created_at, at, tenant, cohort, send_time) = values
            kind, action_id = "status", ""
        else:  # engagement written before it carried the notification's time has only its own
            (notification_id, user_id, status, action_id, _, channel, at, campaign_id, variant, category,
             created_at, tenant) = values
            kind, created_at, action_id = "engagement", created_at or at, action_id or ""
            attempt, provider, reason, platform, cohort, send_time = 0, None, None, None, None, None
        # Keyed by the notification's time, not the row's: every row of one notification (its sends, and
        # clicks after a key rotation) gets the same pseudonym, while other notifications stay unlinked.
        version, user_key = self.keys.of_millis(user_id, created_at, tenant)
        return (at, created_at, kind, status, notification_id, user_key, version, channel or "", category or "",
                campaign_id or "", variant or "", platform or "", provider or "", masked(reason), action_id,
                attempt, tenant or "", cohort or "", send_time or "", topic, partition, offset, now_ms)

    def item(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes, now: datetime) -> dict:
        """One record: {"row": [...]} in COLUMNS order with its times as datetimes, {"erase": [...]},
        {} for records that carry nothing for analytics, or a dead letter."""
        [item] = self.items([Consumed(topic, partition, offset, key, value)], now) or [{}]
        if "rows" not in item:
            return item
        row = list(item["rows"][0])
        for column in TIMES:
            row[column] = EPOCH + timedelta(milliseconds=row[column])
        row[TIMES[-1]] = now
        return {"row": row}


def source_partition(item: dict) -> str:
    """The batching key: rows of one source partition stay in read order, batch after batch."""
    row = item["rows"][0] if "rows" in item else item.get("row")
    if row is not None:
        return f"{row[_TOPIC]}:{row[_PARTITION]}"
    return "erasures"
