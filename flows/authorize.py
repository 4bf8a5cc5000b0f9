"""The authorize step: a request whose sender (`metadata.source_app`) is not granted what it asks
for in its tenant (a category, a priority, an audience kind) is dead-lettered at stage `authorize`
with a reason naming what was refused (kernel/grants.py decides).

Grants come from PostgreSQL through a cache that is re-read every few seconds
(connectors/config_tables.py), so `notifyflow senders grant` reaches a running flow without a
restart. A refused request can be replayed (`notifyflow dlq replay --stage authorize`) once the
sender has been granted what it needs. A grant's rate travels with the request to the ingestion
limits, which count per sender.
"""

from __future__ import annotations

from collections.abc import Callable

from kernel.grants import Grants, rate_of, refusal


def authorize(item: dict, grants: Callable[[], Grants]) -> dict:
    if item.get("outcome"):
        return item
    current = grants()
    if reason := refusal(current, item["request"]):
        # The request stays on the item: it is still keyed by its tenant on the way out.
        return {**item, "outcome": "dead_letter", "stage": "authorize", "reason": reason}
    return {**item, "sender_per_minute": rate_of(current, item["request"])}
