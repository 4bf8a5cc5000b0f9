"""Ingestion limits per tenant and per sender (a tenant's `metadata.source_app`): one upstream
service flooding notify.events must not starve every other sender and tenant.

Requests are counted per second of their broker timestamp over a sliding minute, so a replay
after a crash decides exactly as the first run did. The excess is dead-lettered with the reason:
nothing is lost, and on-call can replay it (`notifyflow dlq replay`) once the flood is over.
The step is keyed by tenant, so each tenant's counts live on one worker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from kernel.keyed import KeyedStep
from kernel.records import rejected

WINDOW_S = 60


@dataclass(frozen=True)
class IngestionLimits:
    tenant_per_minute: int = 60_000
    sender_per_minute: int = 30_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> IngestionLimits:
        """NOTIFYFLOW_TENANT_PER_MINUTE, NOTIFYFLOW_SENDER_PER_MINUTE."""
        defaults = cls()
        try:
            return cls(int(environ.get("NOTIFYFLOW_TENANT_PER_MINUTE", defaults.tenant_per_minute)),
                       int(environ.get("NOTIFYFLOW_SENDER_PER_MINUTE", defaults.sender_per_minute)))
        except ValueError as error:
            raise ValueError(f"ingestion limits must be whole numbers: {error}") from None


def tenant_of(item: dict) -> str:
    return item["request"]["tenant"]


class IngestionLimit(KeyedStep):
    def __init__(self, limits: IngestionLimits) -> None:
        self.limits = limits

    def new_state(self) -> dict:
        return {"tenant": {}, "senders": {}}  # second -> requests admitted in it

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        request = item["request"]
        second = (item["source"].get("timestamp_ms") or now.timestamp() * 1000) // 1000
        sender, tenant_counts = request["metadata"]["source_app"], state["tenant"]
        for counts in (tenant_counts, *state["senders"].values()):
            for old in [s for s in counts if s <= second - WINDOW_S]:
                del counts[old]
        state["senders"] = {name: counts for name, counts in state["senders"].items() if counts}
        sender_counts = state["senders"].setdefault(sender, {})
        # The sender's grant may set its own rate (flows/authorize.py); else the flow's default.
        sender_limit = item.get("sender_per_minute") or self.limits.sender_per_minute
        if sum(tenant_counts.values()) >= self.limits.tenant_per_minute:
            reason = f"tenant {request['tenant']} is over its limit of {self.limits.tenant_per_minute} a minute"
        elif sum(sender_counts.values()) >= sender_limit:
            reason = f"sender {sender} of tenant {request['tenant']} is over its limit of {sender_limit} a minute"
        else:
            tenant_counts[second] = tenant_counts.get(second, 0) + 1
            sender_counts[second] = sender_counts.get(second, 0) + 1
            return [item]
        return [rejected(item["source"], "ingest_limit", reason)]
