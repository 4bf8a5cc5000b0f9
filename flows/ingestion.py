"""Ingestion limits per tenant and per sender (a tenant's `metadata.source_app`): one upstream
service flooding notify.events must not starve every other sender and tenant.

Requests are counted per second of their broker timestamp over a sliding minute, so a replay
after a crash decides exactly as the first run did. The excess is dead-lettered with the reason:
nothing is lost, and on-call can replay it (`notifyflow dlq replay`) once the flood is over.

The step is keyed by the request's source partition, not by tenant, so no tenant's traffic
funnels through one worker: each partition enforces its share of every limit, the limit divided
by the partitions of notify.events, rounded up (`share`), on the requests it carries. Requests are
partitioned by user, so a tenant or sender whose requests spread over many users spreads over the
partitions and gets about its whole limit; one whose traffic sits on few users (few partitions)
gets only those partitions' shares. A dead letter's reason names the share that was exceeded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from kernel.keyed import KeyedStep
from kernel.records import rejected

WINDOW_S = 60


@dataclass(frozen=True)
class IngestionLimits:
    # Sized for the platform's 100,000 requests a second at peak: one tenant may use all of it,
    # one sender half.
    tenant_per_minute: int = 6_000_000
    sender_per_minute: int = 3_000_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> IngestionLimits:
        """NOTIFYFLOW_TENANT_PER_MINUTE, NOTIFYFLOW_SENDER_PER_MINUTE."""
        defaults = cls()
        try:
            return cls(int(environ.get("NOTIFYFLOW_TENANT_PER_MINUTE", defaults.tenant_per_minute)),
                       int(environ.get("NOTIFYFLOW_SENDER_PER_MINUTE", defaults.sender_per_minute)))
        except ValueError as error:
            raise ValueError(f"ingestion limits must be whole numbers: {error}") from None


def share(limit: int, partitions: int) -> int:
    """What one of `partitions` partitions admits of `limit`."""
    return math.ceil(limit / partitions)


def partition_of(item: dict) -> str:
    """The step's key: the topic and partition the request was read from."""
    return f"{item['source']['topic']}/{item['source']['partition']}"


def tenant_of(item: dict) -> str:
    return item["request"]["tenant"]


class IngestionLimit(KeyedStep):
    """Per key (a source partition), the requests each tenant and each of its senders had admitted
    in each second of the last minute; `partitions`: how many partitions share the limits."""

    def __init__(self, limits: IngestionLimits, partitions: int = 1) -> None:
        self.limits, self.partitions = limits, partitions
        self.tenant_limit = share(limits.tenant_per_minute, partitions)
        self.sender_limit = share(limits.sender_per_minute, partitions)

    def new_state(self) -> dict:
        # tenant -> {second: admitted}; (tenant, sender) -> {second: admitted}; when idle ones were last dropped
        return {"tenants": {}, "senders": {}, "swept": None}

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        request, tenant = item["request"], tenant_of(item)
        second = (item["source"].get("timestamp_ms") or now.timestamp() * 1000) // 1000
        sender = request["metadata"]["source_app"]
        sweep(state, second)
        tenant_counts = recent(state["tenants"].setdefault(tenant, {}), second)
        sender_counts = recent(state["senders"].setdefault((tenant, sender), {}), second)
        # The sender's grant may set its own rate (flows/authorize.py); else the flow's default.
        granted = item.get("sender_per_minute")
        sender_limit = share(granted, self.partitions) if granted else self.sender_limit
        if sum(tenant_counts.values()) >= self.tenant_limit:
            reason = f"tenant {tenant} is over its limit of {self.tenant_limit} a minute"
        elif sum(sender_counts.values()) >= sender_limit:
            reason = f"sender {sender} of tenant {tenant} is over its limit of {sender_limit} a minute"
        else:
            tenant_counts[second] = tenant_counts.get(second, 0) + 1
            sender_counts[second] = sender_counts.get(second, 0) + 1
            return [item]
        return [rejected(item["source"], "ingest_limit", reason)]

    def is_empty(self, state: dict) -> bool:
        return not state["tenants"] and not state["senders"]


def recent(counts: dict, second: float) -> dict:
    """`counts` without the seconds that have left the window ending at `second`."""
    for old in [s for s in counts if s <= second - WINDOW_S]:
        del counts[old]
    return counts


def sweep(state: dict, second: float) -> None:
    """Once a minute of broker time, forget the tenants and senders with nothing left in the window."""
    if state["swept"] is not None and second - state["swept"] < WINDOW_S:
        return
    state["swept"] = second
    for name in ("tenants", "senders"):
        state[name] = {key: counts for key, counts in state[name].items() if recent(counts, second)}
