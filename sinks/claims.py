"""Idempotency claims in Redis, one per target of a job (notification, user, channel, device,
revision): `pending:<owner>` while a delivery process sends it, `sent` once the provider took it.

A target marked sent is never sent again. A target pending for this process is already in hand
(a duplicate copy of its job). A target pending for another owner was in flight when that
process died: whether the provider got it is unknown, so it is sent again, with the same
idempotency key the provider protocol carries (webhook-id, apns-id, FCM tag, Web Push Topic,
Message-ID), which lets the receiver drop the copy. Losing it instead would be silent.

Each claim call marks its keys `pending:<owner>:<call>`. A call made again after Redis went away
mid-reply (by the client's own retries or by ours) finds its own mark and sends: answering
"in hand" there would drop a send nobody makes. While Redis is away the calls wait for it.
What the claims need from Redis across a restart (persistence) is in the README."""

from __future__ import annotations

import itertools
import uuid

from connectors.outage import until_back

# Longer than any replay or retry can reach back; short enough that Redis does not fill up.
CLAIM_TTL_S = 7 * 24 * 3600
SENT = "sent"
FRESH, RESUMED, IN_FLIGHT = "fresh", "resumed", "in_flight"

CLAIM = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[3] then return 'fresh' end
if held == 'sent' then return 'sent' end
if held and string.sub(held, 1, string.len(ARGV[1])) == ARGV[1] then return 'in_flight' end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
if held then return 'resumed' end
return 'fresh'
"""


class RedisClaims:
    def __init__(self, redis, owner: str | None = None) -> None:
        self.redis, self.owner = redis, f"pending:{owner or uuid.uuid4().hex}:"
        self.script = redis.register_script(CLAIM)
        self.calls = itertools.count()

    def claim(self, keys: list[str]) -> list[str]:
        """Per key: fresh or resumed (send it), in_flight (this process has it) or sent."""
        if not keys:
            return []
        mark = f"{self.owner}{next(self.calls)}"

        def claim_all() -> list[str]:
            with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    self.script(keys=[key], args=[self.owner, CLAIM_TTL_S, mark], client=pipe)
                return [answer.decode() if isinstance(answer, bytes) else answer for answer in pipe.execute()]
        return until_back(claim_all, "Redis (delivery claims)")

    def confirm(self, keys: list[str]) -> None:
        """The provider accepted these: never send them again."""
        def confirm_all() -> None:
            with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key, SENT, ex=CLAIM_TTL_S)
                pipe.execute()
        if keys:
            until_back(confirm_all, "Redis (delivery claims)")

    def release(self, keys: list[str]) -> None:
        """Nothing was sent: a later replay may try again."""
        if keys:
            until_back(lambda: self.redis.delete(*keys), "Redis (delivery claims)")
