"""Storage per record, for the capacity plan (README "Capacity plan"): not a throughput benchmark.

    python -m bench.sizes [--rows N]

On the local stack, through the code that writes them: N notification-center rows in PostgreSQL (the
in-app sink's upsert; bytes = table, TOAST and indexes over rows), N delivery claims in Redis (the
sinks' claims, confirmed as sent; bytes = used memory's growth over claims), and N analytics rows in
ClickHouse (statuses encoded and turned into rows as the analytics flow does; bytes = the table's
parts on disk, compressed, with the per-minute projection, over rows). Content is typical of a chat
notification: a 27-character title, a 100-character body (and its HTML), one action, a deep link.
Also the Avro size of a request, a delivery job (one Android device) and a status, as the topics hold them.
Last line: pg_bytes_per_notification=<n> redis_bytes_per_claim=<n> clickhouse_bytes_per_row=<n>
avro_bytes_per_request=<n> avro_bytes_per_job=<n> avro_bytes_per_status=<n>
"""

from __future__ import annotations

import argparse
import random
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import redis as redis_client

from analytics import pseudonym
from analytics.rows import Rows
from analytics.store import RawEvents
from connectors import clickhouse
from kernel import records
from kernel.requests import notification_request
from kernel.topics import EVENTS, STATUS, codec_for, outbox_topic
from notifyflow.console import console
from notifyflow.stack import LocalStack
from notifyflow.migrate import migrate_postgres
from sinks.claims import RedisClaims
from sinks.in_app import UPSERT, row

STATES = ("requested", "sent", "delivered", "retried", "escalated")
CHANNELS = ("in_app", "push", "email")


def job(rng: random.Random, now: datetime) -> dict:
    notification, user = str(uuid.UUID(int=rng.getrandbits(128))), f"user-{rng.randrange(10_000_000)}"
    title = "New message from Ana in #gen"
    body = "Are we still on for the design review at three? I moved it to the big room, the projector works."
    return {"notification_id": notification, "user_id": user, "tenant": "acme", "type": "info",
            "category": "messages", "priority": "normal", "title": title, "body": body,
            "html_body": f"<p>{body}</p>", "image_url": None, "icon": None, "badge": None,
            "actions": [{"id": "reply", "title": "Reply", "action": "reply", "icon": None}],
            "deep_link": f"app://chat/general/{notification[:8]}", "payload": {}, "locale": "en",
            "variant": None, "campaign_id": None, "digest_items": [], "fallback": [], "merge": None,
            "presentation": {"sound": True, "vibration": True, "auto_dismiss": True, "duration_seconds": 6},
            "revision": 0, "created_at": now, "expires_at": now + timedelta(days=7)}


def avro_sizes(rng: random.Random, now: datetime) -> dict[str, int]:
    """Encoded bytes of one request, one delivery job and one status, as the topics hold them."""
    sample = job(rng, now)
    request = notification_request(user_id=sample["user_id"], title=sample["title"], body=sample["body"],
                                   category="messages", source_app="chat", tenant="acme")
    delivery_job = {**sample, "job_id": f"{sample['notification_id']}:{sample['user_id']}:push:0",
                    "request_ids": [request["id"]], "channel": "push", "lane": "normal", "kind": "single",
                    "template_id": None, "collapse_key": sample["notification_id"], "address": None,
                    "devices": [{"device_id": "phone-1", "platform": "android", "token": "t" * 160, "web_push": None}]}
    status = records.status(notification_id=sample["notification_id"], user_id=sample["user_id"], tenant="acme",
                            state="sent", channel="push", category="messages", campaign_id=None, variant=None,
                            created_at=now, at=now, provider="fcm",
                            device={"device_id": "phone-1", "platform": "android"})
    return {name: len(codec_for(topic).encode(value)) for name, topic, value in (
        ("request", EVENTS, request), ("job", outbox_topic("push", "normal"), delivery_job),
        ("status", STATUS, status))}


def postgres(url: str, rows: int, rng: random.Random, now: datetime) -> float:
    """In a database of its own, so nothing else is counted."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS sizes")
        admin.execute("CREATE DATABASE sizes")
    database = url.rsplit("/", 1)[0] + "/sizes"
    migrate_postgres(database)
    with psycopg.connect(database, autocommit=True) as conn:
        for start in range(0, rows, 500):
            with conn.transaction():
                conn.cursor().executemany(UPSERT, [row(job(rng, now)) for _ in range(min(500, rows - start))])
        conn.execute("VACUUM ANALYZE notifications")  # sizes as they settle, not mid-insert
        total, count = conn.execute("SELECT pg_total_relation_size('notifications'), count(*) "
                                    "FROM notifications").fetchone()
    return total / count


def redis_claims(url: str, rows: int, rng: random.Random) -> float:
    client = redis_client.Redis.from_url(url)
    claims = RedisClaims(client)
    before = client.info("memory")["used_memory"]
    keys = [f"claim:{uuid.UUID(int=rng.getrandbits(128))}:user-{rng.randrange(10_000_000)}:push:"
            f"device-{rng.randrange(10**6)}:0" for _ in range(rows)]
    for start in range(0, rows, 1000):
        claims.claim(keys[start:start + 1000])
        claims.confirm(keys[start:start + 1000])
    return (client.info("memory")["used_memory"] - before) / rows


def clickhouse_rows(url: str, rows: int, rng: random.Random, now: datetime) -> float:
    codec = codec_for(STATUS)
    builder = Rows(pseudonym.UserKeys(b"sizes-measurement-key", timedelta(days=30)), None)
    items = []
    for offset in range(rows):
        state, channel = rng.choice(STATES), rng.choice(CHANNELS)
        at = now - timedelta(seconds=rng.randrange(3600))
        status = records.status(notification_id=str(uuid.UUID(int=rng.getrandbits(128))),
                                user_id=f"user-{rng.randrange(10_000_000)}", tenant="acme", state=state,
                                channel=channel, category="messages", campaign_id=None, variant=None,
                                created_at=at - timedelta(milliseconds=rng.randrange(200)), at=at,
                                provider={"push": "fcm", "email": "ses"}.get(channel, "notification-center"))
        items.append(builder.item(STATUS, offset % 4, offset, b"k", codec.encode(status), now))
    client = clickhouse.client(url)
    RawEvents(client).write(items)
    client.command("OPTIMIZE TABLE notifyflow.events_raw FINAL")
    size, count = client.query("SELECT sum(bytes_on_disk), sum(rows) FROM system.parts WHERE database = 'notifyflow' "
                               "AND table = 'events_raw' AND active").result_rows[0]
    return size / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    rows, rng, now = parser.parse_args().rows, random.Random(7), datetime.now(UTC)
    avro = avro_sizes(rng, now)
    with LocalStack(environ={}, on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack:
        pg = postgres(stack.urls["DATABASE_URL"], rows, rng, now)
        claim = redis_claims(stack.urls["REDIS_URL"], rows, rng)
        ch = clickhouse_rows(stack.urls["CLICKHOUSE_URL"], rows, rng, now)
    console.print(f"{rows:,} of each: PostgreSQL {pg:,.0f} B/notification, Redis {claim:,.0f} B/claim, "
                  f"ClickHouse {ch:,.0f} B/row")
    print(f"pg_bytes_per_notification={pg:.0f} redis_bytes_per_claim={claim:.0f} clickhouse_bytes_per_row={ch:.0f} "
          + " ".join(f"avro_bytes_per_{name}={size}" for name, size in avro.items()))


if __name__ == "__main__":
    main()
