"""Retention (GDPR storage limitation): per-user data in PostgreSQL older than its limit is deleted.

Run it daily (`notifyflow retention`, e.g. from cron). Elsewhere retention is built in: Redis claims
expire by TTL, ClickHouse raw rows by the table's TTL (90 days), topics by their retention settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors import postgres

HISTORY = timedelta(days=30)
# Deleted in batches, so a first run on a large table neither holds long locks nor one huge transaction.
BATCH = 10_000


@dataclass(frozen=True)
class Rule:
    what: str
    table: str
    keep: timedelta
    expired: str  # SQL condition on %(cutoff)s


RULES = (
    # A delete tombstone (deleted_at set) is a notification row too: it goes when its notification does.
    Rule("notification history", "notifications", HISTORY, "created_at < %(cutoff)s"),
    # A retired device (logged out, token invalid) is never sent to again; re-registering revives it.
    Rule("retired devices", "devices", HISTORY, "NOT active AND registered_at < %(cutoff)s"),
    # The HTTP front door's Idempotency-Keys: a retry comes within minutes, not days.
    Rule("idempotency keys", "ingest_requests", timedelta(days=1), "created_at < %(cutoff)s"),
)


def run(database_url: str, now: datetime,
        on_progress: Callable[[Rule, int], None] = lambda rule, deleted: None) -> dict[str, int]:
    """Delete what every rule says has expired at `now`; returns how many rows went per rule."""
    counts = {}
    with postgres.connect(database_url) as db:
        for rule in RULES:
            deleted, params = 0, {"cutoff": now - rule.keep, "batch": BATCH}
            while True:
                batch = db.execute(f"DELETE FROM {rule.table} WHERE ctid IN (SELECT ctid FROM {rule.table} "
                                   f"WHERE {rule.expired} LIMIT %(batch)s)", params).rowcount
                deleted += batch
                on_progress(rule, deleted)
                if batch < BATCH:
                    break
            counts[rule.what] = deleted
    return counts
