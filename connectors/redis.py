"""Redis (or Valkey) client configured the one way the project uses it."""

from __future__ import annotations

import redis

from kernel.requests import user_key


def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def user_channel(tenant: str, user_id: str) -> str:
    """The pub/sub channel every gateway serving this user's devices listens on: one per (tenant, user)."""
    return f"user:{user_key(tenant, user_id)}"
