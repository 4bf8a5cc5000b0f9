"""In-app delivery: the notification-center row in PostgreSQL, then a Redis publish so every
open device of the user shows it at once.

The row is the idempotency key. A job is written with INSERT .. ON CONFLICT that applies only
a newer revision, and only rows actually written are published: a replayed job changes
nothing and shows nothing twice, and a merge update that arrives on a faster lane before an
older revision is never overwritten by it.

Built `reconnecting` (as the delivery flow does), it waits out PostgreSQL and Redis going away:
the write is one transaction, run again until it commits; the publish of what it wrote is retried
on its own, so rows committed before Redis went away are still announced once it is back.
"""

from __future__ import annotations

import json
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from connectors import redis as redis_connector
from connectors.outage import until_back
from connectors.postgres import Database
from connectors.redis import user_channel
from sinks.jobs import status

UPSERT = """
INSERT INTO notifications AS n (id, user_id, tenant, type, category, priority, title, body, content,
                                merge_count, revision, created_at, expires_at)
VALUES (%(notification_id)s, %(user_id)s, %(tenant)s, %(type)s, %(category)s, %(priority)s, %(title)s,
        %(body)s, %(content)s, %(merge_count)s, %(revision)s, %(created_at)s, %(expires_at)s)
ON CONFLICT (tenant, user_id, id) DO UPDATE SET
    title = EXCLUDED.title, body = EXCLUDED.body, content = EXCLUDED.content, priority = EXCLUDED.priority,
    merge_count = EXCLUDED.merge_count, revision = EXCLUDED.revision, delivered_at = now(),
    read_at = NULL,  -- "3 new messages" is news again
    event_seq = nextval(pg_get_serial_sequence('notifications', 'event_seq'))
WHERE n.revision < EXCLUDED.revision AND n.deleted_at IS NULL  -- the user deleted it: it stays deleted
RETURNING id, user_id, event_seq, (xmax = 0) AS inserted
"""
# What the browser renders besides title and body; never the user's address or device tokens.
CONTENT_FIELDS = ("html_body", "image_url", "icon", "badge", "actions", "deep_link", "payload", "locale",
                  "variant", "campaign_id", "digest_items", "fallback", "presentation")


def row(job: dict) -> dict:
    content = {name: job[name] for name in CONTENT_FIELDS}
    content["digest_items"] = [{**item, "created_at": item["created_at"].isoformat()}
                               for item in job["digest_items"]]
    return {"notification_id": job["notification_id"], "user_id": job["user_id"], "tenant": job["tenant"],
            "type": job["type"], "category": job["category"], "priority": job["priority"], "title": job["title"],
            "body": job["body"], "content": Jsonb(content), "merge_count": (job["merge"] or {}).get("count", 1),
            "revision": job["revision"], "created_at": job["created_at"], "expires_at": job["expires_at"]}


def event(job: dict, event_seq: int, inserted: bool) -> str:
    """The message every open device of the user receives."""
    notification = {"id": job["notification_id"], "revision": job["revision"], "title": job["title"],
                    "body": job["body"], "category": job["category"], "priority": job["priority"],
                    "type": job["type"], "created_at": job["created_at"].isoformat(),
                    "merge_count": (job["merge"] or {}).get("count", 1),
                    **{name: job[name] for name in CONTENT_FIELDS if name not in ("digest_items", "fallback")}}
    return json.dumps({"event": "notification.created" if inserted else "notification.updated",
                       "event_seq": event_seq, "notification": notification})


class InAppSink:
    def __init__(self, connection: psycopg.Connection | Database, redis, waits: bool = False) -> None:
        self.database = connection if isinstance(connection, Database) else Database(connection=connection)
        self.redis, self.waits = redis, waits

    @classmethod
    def reconnecting(cls, database_url: str, redis_url: str) -> InAppSink:
        return cls(Database(database_url), redis_connector.client(redis_url), waits=True)

    @property
    def connection(self) -> psycopg.Connection:
        return self.database.connection

    def deliver(self, jobs: list[dict], now: datetime) -> list[dict]:
        """Write and publish a batch; one `delivered` status per job (written now or before)."""
        written = self.database.run(lambda connection: self.write(connection, jobs))
        # Published after the commit: a device told about a row can always read it.
        if self.waits:
            until_back(lambda: self.publish(written), "Redis")
        else:
            self.publish(written)
        return [status(job, "delivered", now, provider="notification-center") for job in jobs]

    @staticmethod
    def write(connection: psycopg.Connection, jobs: list[dict]) -> list[tuple[dict, int, bool]]:
        written = []
        with connection.transaction(), connection.cursor() as cursor:
            cursor.executemany(UPSERT, [row(job) for job in jobs], returning=True)
            for job, _ in zip(jobs, cursor.results()):
                written += [(job, seq, inserted) for _id, _user, seq, inserted in cursor.fetchall()]
        return written

    def publish(self, written: list[tuple[dict, int, bool]]) -> None:
        # A retry after a lost reply may publish an event twice: the gateway forwards each event_seq once.
        with self.redis.pipeline(transaction=False) as pipe:
            for job, seq, inserted in written:
                pipe.publish(user_channel(job["tenant"], job["user_id"]), event(job, seq, inserted))
            pipe.execute()
