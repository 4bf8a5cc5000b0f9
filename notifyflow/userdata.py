"""Everything notifyflow stores about one user, to export it (GDPR access) or erase it (GDPR erasure).
A user is (tenant, user id): a tenant's `alice` is found and erased, never another tenant's.

Where a user's data lives:
- PostgreSQL: notification-center rows (with delete tombstones), preferences, devices, audience
  memberships, email suppressions of the user's addresses;
- Redis: the delivery claims of the sinks (`<claim_prefix(tenant)><notification>:<user>:<channel>:<device>:<revision>`);
- Kafka: the latest records on the compacted topics keyed by user (preferences, devices, presence);
- ClickHouse: raw analytics rows under the user's pseudonyms (every key version still in retention),
  read through the analytics process's SQL endpoint (in the embedded default only it may open chDB);
- the flows' state and ClickHouse's pseudonymous raw rows, reached by the erasure tombstone on
  `notify.preferences`: the notification flow drops the user's state, the analytics flow deletes the rows.

Topics kept by time (events, statuses, outboxes, dead letters) are not rewritten; they expire.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from psycopg.rows import dict_row

from analytics import pseudonym
from analytics.server import MAX_ROWS
from connectors import postgres, redis
from connectors.kafka import produce_all, producer, read_topic
from kernel.requests import DEFAULT_TENANT, device_record, preferences_record, routing_key, user_key
from kernel.settings import Settings
from kernel.topics import CHANNELS, DEVICES, PREFERENCES, PRESENCE, USER_STATE_TOPICS, codec_for
from sinks.claims import claim_prefix

# The user's rows per table (the sinks' delivery claims are in Redis: claim_pattern).
OWNER = "tenant = %(tenant)s AND user_id = %(user)s"
USER_ROWS = {
    "notifications": OWNER,
    "preferences": OWNER,
    "devices": OWNER,
    "audience_members": OWNER,
    # keyed by the lower-cased address, as the email sink stores them
    "email_suppressions": "address = ANY(%(addresses)s)",
}
GLOB_SPECIAL = re.compile(r"[*?\[\]\\]")
ORDER = {"notifications": "created_at, id", "devices": "device_id", "audience_members": "audience",
         "email_suppressions": "address"}


def claim_pattern(user_id: str, tenant: str = DEFAULT_TENANT) -> str:
    """A Redis SCAN pattern that finds at least every claim key of the user (sinks/engine.py Send.claim_key)."""
    prefix, escaped = (GLOB_SPECIAL.sub(lambda special: "\\" + special[0], part)
                       for part in (claim_prefix(tenant), user_id))
    return f"{prefix}*:{escaped}:*"


def is_claim_of(key: str, user_id: str, tenant: str = DEFAULT_TENANT) -> bool:
    """Whether a key the pattern found is the user's own claim, not one whose ids merely contain the user id."""
    channels = "|".join(CHANNELS)
    return re.fullmatch(rf"{re.escape(claim_prefix(tenant))}.+:{re.escape(user_id)}:(?:{channels}):.*:\d+", key,
                        re.DOTALL) is not None


def latest_records(config: Settings, user_id: str, tenant: str, idle_timeout_s: float) -> dict[str, list[dict]]:
    """The user's latest record on each compacted topic: one for preferences, one per device otherwise."""
    latest: dict[str, dict] = {topic: {} for topic in USER_STATE_TOPICS}
    codecs = {topic: codec_for(topic, config.schema_registry_url) for topic in USER_STATE_TOPICS}
    key = user_key(tenant, user_id).encode()
    for message in read_topic(config.kafka_bootstrap_servers, list(USER_STATE_TOPICS), idle_timeout_s=idle_timeout_s,
                              deadline_s=600):
        if message.key() == key:
            record = codecs[message.topic()].decode(message.value())
            latest[message.topic()][record.get("device_id")] = record
    return {topic: list(records.values()) for topic, records in latest.items()}


def addresses(preferences: list[dict]) -> list[str]:
    return sorted({p["email"].lower() for p in preferences if p.get("email")})


def postgres_rows(db, user_id: str, tenant: str, emails: list[str]) -> dict[str, list[dict]]:
    params = {"user": user_id, "tenant": tenant, "addresses": emails}
    with db.cursor(row_factory=dict_row) as cursor:
        return {table: cursor.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY {ORDER.get(table, 1)}",
                                      params).fetchall()
                for table, where in USER_ROWS.items()}


def claim_keys(client, user_id: str, tenant: str = DEFAULT_TENANT) -> list[str]:
    keys = (key.decode() for key in client.scan_iter(match=claim_pattern(user_id, tenant), count=1000))
    return sorted(key for key in keys if is_claim_of(key, user_id, tenant))


def analytics_rows(analytics_url: str, user_id: str, now: datetime, tenant: str = DEFAULT_TENANT) -> list[dict]:
    """The user's raw rows in ClickHouse through the analytics process at `analytics_url`, a page at a
    time (it answers at most MAX_ROWS rows); httpx.HTTPError when it does not answer."""
    keys = pseudonym.from_env().every_version(user_id, now, tenant)
    pairs = ", ".join(f"({version}, '{key}')" for version, key in keys)
    rows: list[dict] = []
    while True:
        response = httpx.post(f"{analytics_url.rstrip('/')}/api/sql", timeout=60, content=(
            f"SELECT * FROM notifyflow.events_raw WHERE (key_version, user_key) IN ({pairs}) ORDER BY "
            f"source_topic, source_partition, source_offset LIMIT {MAX_ROWS} OFFSET {len(rows)}").encode())
        response.raise_for_status()
        page = response.json()
        rows += [dict(zip(page["columns"], row)) for row in page["rows"]]
        if len(page["rows"]) < MAX_ROWS:
            return rows


def export(config: Settings, user_id: str, *, tenant: str = DEFAULT_TENANT, idle_timeout_s: float = 3.0,
           on_step: Callable[[str], None] = lambda step: None) -> dict:
    """All stored data of the tenant's user but ClickHouse's (`analytics_rows`); for an unknown user, every
    part is empty."""
    on_step("reading the compacted topics")
    kafka = latest_records(config, user_id, tenant, idle_timeout_s)
    on_step("reading PostgreSQL")
    with postgres.connect(config.database_url) as db:
        stored_preferences = [stored for (stored,) in db.execute(
            "SELECT settings FROM preferences WHERE tenant = %s AND user_id = %s", (tenant, user_id)).fetchall()]
        rows = postgres_rows(db, user_id, tenant, addresses(kafka[PREFERENCES] + stored_preferences))
    on_step("reading Redis")
    return {"user_id": user_id, "tenant": tenant, "postgres": rows,
            "redis": {"delivery_claims": claim_keys(redis.client(config.redis_url), user_id, tenant)}, "kafka": kafka}


def tombstones(user_id: str, data: dict, now: datetime) -> list[tuple[str, dict]]:
    """(topic, record) that make the latest records on the compacted topics hold nothing but ids, and
    make the flows forget the user. The preferences tombstone is the one flows erase on; the others
    only retire a device or a connection, so no order among them matters (nothing orders topics anyway)."""
    tenant = data["tenant"]
    devices = {d["device_id"]: d["platform"] for d in data["postgres"]["devices"] + data["kafka"][DEVICES]}
    out = [(DEVICES, device_record(user_id, device_id, platform, registered_at=now, active=False, tenant=tenant))
           for device_id, platform in sorted(devices.items())]
    out += [(PRESENCE, {"user_id": user_id, "device_id": p["device_id"], "status": "offline", "at": now,
                        "gateway_id": None, "tenant": tenant}) for p in data["kafka"][PRESENCE]]
    return out + [(PREFERENCES, preferences_record(user_id, updated_at=now, deleted=True, tenant=tenant))]


def erase(config: Settings, user_id: str, *, tenant: str = DEFAULT_TENANT, idle_timeout_s: float = 3.0,
          on_step: Callable[[str], None] = lambda step: None) -> dict[str, int]:
    """Remove the tenant's user from PostgreSQL and Redis, and publish the tombstones that erase the user
    from the flows' state and ClickHouse. Returns how much went, per place."""
    data = export(config, user_id, tenant=tenant, idle_timeout_s=idle_timeout_s, on_step=on_step)
    on_step("publishing the erasure tombstones")
    # First, so a flow stops acting for the user (releasing a deferred notification into the
    # notification center) before the rows go.
    records = tombstones(user_id, data, datetime.now(UTC))
    client = producer(config.kafka_bootstrap_servers)
    for topic in USER_STATE_TOPICS:
        codec = codec_for(topic, config.schema_registry_url)
        produce_all(client, topic, [(routing_key(r), codec.encode(r)) for t, r in records if t == topic])
    counts = {f"kafka {topic} tombstones": sum(t == topic for t, _ in records) for topic in USER_STATE_TOPICS}
    on_step("deleting from PostgreSQL")
    params = {"user": user_id, "tenant": tenant,
              "addresses": [row["address"] for row in data["postgres"]["email_suppressions"]]}
    with postgres.connect(config.database_url) as db, db.transaction():
        for table, where in USER_ROWS.items():
            counts[f"postgres {table}"] = db.execute(f"DELETE FROM {table} WHERE {where}", params).rowcount
    on_step("deleting from Redis")
    keys = data["redis"]["delivery_claims"]
    counts["redis delivery_claims"] = redis.client(config.redis_url).delete(*keys) if keys else 0
    return counts
