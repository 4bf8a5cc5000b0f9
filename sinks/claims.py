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
from kernel.requests import DEFAULT_TENANT

# Longer than any replay or retry can reach back; short enough that Redis does not fill up.
CLAIM_TTL_S = 7 * 24 * 3600
SENT = "sent"
FRESH, RESUMED, IN_FLIGHT = "fresh", "resumed", "in_flight"


def claim_prefix(tenant: str) -> str:
    """Each tenant's claims under a prefix of their own (`claim:` for the default tenant, as before
    tenants; `claim@<tenant>:` otherwise): the user id inside a key then names one user, so erasing one
    tenant's `alice` never touches another tenant's."""
    return "claim:" if tenant == DEFAULT_TENANT else f"claim@{tenant}:"


# One call per batch, each key decided on its own: per-key calls in a pipeline cost the client more
# than the decisions (packing and parsing a command per key: ~60 us of CPU a send on our profile).
CLAIM = """
local answers = {}
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held == ARGV[3] then answers[i] = 'fresh'
  elseif held == 'sent' then answers[i] = 'sent'
  elseif held and string.sub(held, 1, string.len(ARGV[1])) == ARGV[1] then answers[i] = 'in_flight'
  else
    redis.call('SET', key, ARGV[3], 'EX', ARGV[2])
    if held then answers[i] = 'resumed' else answers[i] = 'fresh' end
  end
end
return answers
"""
CONFIRM = """
for _, key in ipairs(KEYS) do redis.call('SET', key, 'sent', 'EX', ARGV[1]) end
return #KEYS
"""


class RedisClaims:
    def __init__(self, redis, owner: str | None = None) -> None:
        self.redis, self.owner = redis, f"pending:{owner or uuid.uuid4().hex}:"
        self.claim_script, self.confirm_script = redis.register_script(CLAIM), redis.register_script(CONFIRM)
        self.calls = itertools.count()

    def claim(self, keys: list[str]) -> list[str]:
        """Per key: fresh or resumed (send it), in_flight (this process has it) or sent."""
        if not keys:
            return []
        mark = f"{self.owner}{next(self.calls)}"

        def claim_all() -> list[str]:
            answers = self.claim_script(keys=keys, args=[self.owner, CLAIM_TTL_S, mark])
            return [answer.decode() if isinstance(answer, bytes) else answer for answer in answers]
        return until_back(claim_all, "Redis (delivery claims)")

    def confirm(self, keys: list[str]) -> None:
        """The provider accepted these: never send them again."""
        if keys:
            until_back(lambda: self.confirm_script(keys=keys, args=[CLAIM_TTL_S]), "Redis (delivery claims)")

    def release(self, keys: list[str]) -> None:
        """Nothing was sent: a later replay may try again."""
        if keys:
            until_back(lambda: self.redis.delete(*keys), "Redis (delivery claims)")
