"""What a user set up, in PostgreSQL: preferences and devices, always of the caller (the token's tenant
and user).

The flows keep their own copy from the records the gateway publishes; these rows are what the API
reads back at once, and what a user's data export finds."""

from __future__ import annotations

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from gateway.auth import User
from gateway.center import OWNER, fetch, owner


class Store:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def preferences(self, user: User) -> dict | None:
        """The user's saved preferences; None when there are none yet."""
        rows = await fetch(self.pool, f"SELECT settings FROM preferences WHERE {OWNER}", owner(user))
        return rows[0]["settings"] if rows else None

    async def save_preferences(self, user: User, preferences: dict) -> None:
        await fetch(self.pool, "INSERT INTO preferences (tenant, user_id, settings, updated_at) "
                               "VALUES (%s, %s, %s, now()) ON CONFLICT (tenant, user_id) "
                               "DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()",
                    [*owner(user), Jsonb(preferences)])

    async def register_device(self, user: User, device: dict) -> None:
        """`device` is a device record; registering a known device again updates and reactivates it."""
        await fetch(self.pool,
                    "INSERT INTO devices (tenant, user_id, device_id, platform, token, web_push, app_version, active) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, true) ON CONFLICT (tenant, user_id, device_id) DO UPDATE SET "
                    "platform = EXCLUDED.platform, token = EXCLUDED.token, web_push = EXCLUDED.web_push, "
                    "app_version = EXCLUDED.app_version, active = true, registered_at = now()",
                    [*owner(user), device["device_id"], device["platform"], device["token"],
                     Jsonb(device["web_push"]) if device["web_push"] else None, device["app_version"]])

    async def deactivate_device(self, user: User, device_id: str) -> dict | None:
        """The device's platform and token; None when the user has no such device."""
        rows = await fetch(self.pool, f"UPDATE devices SET active = false WHERE {OWNER} AND device_id = %s "
                                      "RETURNING platform, token", [*owner(user), device_id])
        return rows[0] if rows else None
