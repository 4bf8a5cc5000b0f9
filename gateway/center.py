"""The notification center in PostgreSQL, always scoped to one user: every query takes the
caller's tenant and user id from the token, never from the request, so no one reads or changes another
user's notifications, nor a same-named user's of another tenant.

Every change bumps the row's `event_seq`, so a device that reconnects with the last event id it
saw gets exactly what changed meanwhile (new, merged, read, unread, archived, deleted). A delete
leaves a tombstone (no content) for that replay."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from gateway.auth import User

COLUMNS = """id, category, priority, type, title, body, content, merge_count, revision, event_seq, created_at,
             read_at IS NOT NULL AS read, archived_at IS NOT NULL AS archived, deleted_at IS NOT NULL AS deleted"""
LIVE = "deleted_at IS NULL"
STATES = {"unread": f"{LIVE} AND read_at IS NULL AND archived_at IS NULL",
          "read": f"{LIVE} AND read_at IS NOT NULL AND archived_at IS NULL",
          "archived": f"{LIVE} AND archived_at IS NOT NULL", "all": LIVE, "inbox": f"{LIVE} AND archived_at IS NULL"}
NEXT_SEQ = "nextval(pg_get_serial_sequence('notifications', 'event_seq'))"
MAX_PAGE = 100
OWNER = "tenant = %s AND user_id = %s"  # every query's first condition, with owner(user) as its parameters


class BadRequest(ValueError):
    pass


def as_json(row: dict) -> dict:
    """A center row as clients see it (content fields flattened, times as ISO-8601)."""
    content = row["content"] or {}
    return {"id": row["id"], "category": row["category"], "priority": row["priority"], "type": row["type"],
            "title": row["title"], "body": row["body"], "html_body": content.get("html_body"),
            "image_url": content.get("image_url"), "icon": content.get("icon"), "actions": content.get("actions", []),
            "deep_link": content.get("deep_link"), "campaign_id": content.get("campaign_id"),
            "variant": content.get("variant"), "presentation": content.get("presentation"),
            "merge_count": row["merge_count"], "revision": row["revision"], "event_seq": row["event_seq"],
            "created_at": row["created_at"].isoformat(), "read": row["read"], "archived": row["archived"],
            "deleted": row["deleted"]}


def attribution(row: dict) -> dict:
    """What an engagement with a notification carries of it: from a stored row, where campaign and
    variant are in `content`, or from one as clients see it (as_json), where they are flattened."""
    fields = (row["content"] or {}) if "content" in row else row
    created_at = row.get("created_at")
    return {"category": row["category"], "campaign_id": fields.get("campaign_id"), "variant": fields.get("variant"),
            "created_at": datetime.fromisoformat(created_at) if isinstance(created_at, str) else created_at}


def parse_seq(value: str | None) -> int | None:
    """A non-negative number from a query parameter or header; None when absent."""
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise BadRequest(f"expected a number, got {value[:20]!r}")
    return int(value)


def owner(user: User) -> list[str]:
    return [user.tenant, user.id]


def encode_cursor(row: dict) -> str:
    return base64.urlsafe_b64encode(f"{row['created_at'].isoformat()}|{row['id']}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, notification_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), notification_id
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("invalid cursor") from None


class Center:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def page(self, user: User, *, limit: int = 20, cursor: str | None = None, category: str | None = None,
                   state: str = "inbox") -> dict:
        """Newest first; `next_cursor` continues after the last item (stable while new ones arrive)."""
        if state not in STATES:
            raise BadRequest(f"state must be one of {', '.join(STATES)}")
        limit = max(1, min(limit, MAX_PAGE))
        where, params = [OWNER, STATES[state]], owner(user)
        if category:
            where.append("category = %s")
            params.append(category)
        if cursor:
            where.append("(created_at, id) < (%s, %s)")
            params += decode_cursor(cursor)
        rows = await self.fetch(f"SELECT {COLUMNS} FROM notifications WHERE {' AND '.join(where)} "
                                f"ORDER BY created_at DESC, id DESC LIMIT %s", [*params, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": [as_json(r) for r in rows], "next_cursor": encode_cursor(rows[-1]) if more else None}

    async def unread_counts(self, user: User) -> dict:
        rows = await self.fetch(f"SELECT category, count(*) AS n FROM notifications WHERE {OWNER} AND "
                                f"{STATES['unread']} GROUP BY category ORDER BY category", owner(user))
        return {"total": sum(r["n"] for r in rows), "by_category": {r["category"]: r["n"] for r in rows}}

    async def set_state(self, user: User, ids: list[str], change: str) -> list[dict]:
        """read | unread | archive for the caller's own notifications; returns the rows changed."""
        assignment = {"read": "read_at = coalesce(read_at, now())", "unread": "read_at = NULL",
                      "archive": "archived_at = coalesce(archived_at, now())"}[change]
        return [as_json(r) for r in await self.fetch(
            f"UPDATE notifications SET {assignment}, event_seq = {NEXT_SEQ} WHERE {OWNER} AND id = ANY(%s) "
            f"AND {LIVE} RETURNING {COLUMNS}", [*owner(user), ids])]

    async def read_all(self, user: User, category: str | None = None) -> list[dict]:
        extra, params = ("AND category = %s", [*owner(user), category]) if category else ("", owner(user))
        return [as_json(r) for r in await self.fetch(
            f"UPDATE notifications SET read_at = now(), event_seq = {NEXT_SEQ} WHERE {OWNER} AND read_at IS NULL "
            f"AND {LIVE} {extra} RETURNING {COLUMNS}", params)]

    async def delete(self, user: User, notification_id: str) -> dict | None:
        """The delete's event_seq and what the notification was (its attribution, read before the
        content is wiped); None when the caller has no such notification."""
        rows = await self.fetch(
            f"WITH gone AS (SELECT id, category, content, created_at FROM notifications WHERE {OWNER} AND id = %s "
            f"AND {LIVE} FOR UPDATE) UPDATE notifications AS n SET deleted_at = now(), title = '', body = '', "
            f"content = '{{}}', event_seq = {NEXT_SEQ} FROM gone WHERE n.tenant = %s AND n.user_id = %s "
            f"AND n.id = gone.id RETURNING n.event_seq, gone.category, gone.content, gone.created_at",
            [*owner(user), notification_id, *owner(user)])
        return {"event_seq": rows[0]["event_seq"], **attribution(rows[0])} if rows else None

    async def since(self, user: User, event_seq: int, limit: int) -> list[dict]:
        """Up to `limit` changes for the user after `event_seq`, oldest first: the replay on reconnect."""
        return [as_json(r) for r in await self.fetch(
            f"SELECT {COLUMNS} FROM notifications WHERE {OWNER} AND event_seq > %s ORDER BY event_seq LIMIT %s",
            [*owner(user), event_seq, limit])]

    async def latest_seq(self, user: User) -> int:
        rows = await self.fetch(f"SELECT coalesce(max(event_seq), 0) AS seq FROM notifications WHERE {OWNER}",
                                owner(user))
        return rows[0]["seq"]

    async def attribution(self, user: User, notification_id: str | None) -> dict | None:
        """What an engagement report carries of the notification (category, campaign, variant);
        None when the caller has no such notification."""
        rows = await self.fetch(f"SELECT category, content, created_at FROM notifications WHERE {OWNER} AND id = %s",
                                [*owner(user), notification_id])
        return attribution(rows[0]) if rows else None

    async def fetch(self, query: str, params: list) -> list[dict]:
        return await fetch(self.pool, query, params)

    async def healthy(self, timeout_s: float = 1.0) -> bool:
        try:
            await asyncio.wait_for(self.fetch("SELECT 1", []), timeout_s)
            return True
        except (TimeoutError, psycopg.Error):  # a pool with no connection to give is an OperationalError
            return False


async def fetch(pool: AsyncConnectionPool, query: str, params: list) -> list[dict]:
    async with pool.connection() as connection, connection.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchall() if cursor.description else []
