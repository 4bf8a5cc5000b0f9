"""What the HTTP front door keeps in PostgreSQL: API keys (created by `notifyflow keys`) and the
answers given to requests with an Idempotency-Key, per sender (tenant, source_app)."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gateway.center import fetch
from kernel.apikeys import matches, parse

# A first request that has not stored its answer after this long died on the way: a retry takes over.
ABANDONED_S = 60


@dataclass(frozen=True)
class Sender:
    key_id: str
    tenant: str
    source_app: str
    per_minute: int


class IngestStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def sender_of(self, key: str) -> Sender | None:
        """The sender an API key belongs to; None for a malformed, unknown, wrong or revoked key."""
        parsed = parse(key)
        if parsed is None:
            return None
        rows = await fetch(self.pool, "SELECT tenant, source_app, secret_sha256, per_minute FROM api_keys "
                                      "WHERE key_id = %s AND revoked_at IS NULL", [parsed[0]])
        if not rows or not matches(parsed[1], rows[0]["secret_sha256"]):
            return None
        return Sender(parsed[0], rows[0]["tenant"], rows[0]["source_app"], rows[0]["per_minute"])

    async def claim(self, sender: Sender, key: str, body_sha256: str) -> dict | None:
        """None when this request is the first with the key (it must `answer` or `release`), else the
        row of the first: its body's hash and its answer (None while it is being handled)."""
        claimed = await fetch(
            self.pool, "INSERT INTO ingest_requests (tenant, source_app, idempotency_key, body_sha256) "
                       "VALUES (%s, %s, %s, %s) ON CONFLICT (tenant, source_app, idempotency_key) DO UPDATE "
                       "SET body_sha256 = EXCLUDED.body_sha256, created_at = now() "
                       f"WHERE ingest_requests.response IS NULL AND ingest_requests.created_at < "
                       f"now() - interval '{ABANDONED_S} seconds' RETURNING 1",
            [sender.tenant, sender.source_app, key, body_sha256])
        if claimed:
            return None
        rows = await fetch(self.pool, "SELECT body_sha256, response FROM ingest_requests WHERE tenant = %s AND "
                                      "source_app = %s AND idempotency_key = %s",
                           [sender.tenant, sender.source_app, key])
        return rows[0] if rows else {"body_sha256": body_sha256, "response": None}

    async def answer(self, sender: Sender, key: str, response: dict) -> None:
        await fetch(self.pool, "UPDATE ingest_requests SET response = %s WHERE tenant = %s AND source_app = %s "
                               "AND idempotency_key = %s", [Jsonb(response), sender.tenant, sender.source_app, key])

    async def release(self, sender: Sender, key: str) -> None:
        """Nothing was published: a retry with the key is handled as new."""
        await fetch(self.pool, "DELETE FROM ingest_requests WHERE tenant = %s AND source_app = %s AND "
                               "idempotency_key = %s AND response IS NULL", [sender.tenant, sender.source_app, key])
