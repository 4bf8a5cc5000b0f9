"""Idempotency claims in Redis: a target is sent a job only by whoever claims it first."""

from __future__ import annotations

# Longer than any replay or retry can reach back; short enough that Redis does not fill up.
CLAIM_TTL_S = 7 * 24 * 3600


class RedisClaims:
    def __init__(self, redis) -> None:
        self.redis = redis

    def claim(self, keys: list[str]) -> list[bool]:
        """True for each key this call claimed, False where an earlier attempt already holds it."""
        if not keys:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, b"1", nx=True, ex=CLAIM_TTL_S)
            return [bool(claimed) for claimed in pipe.execute()]

    def release(self, keys: list[str]) -> None:
        if keys:
            self.redis.delete(*keys)
