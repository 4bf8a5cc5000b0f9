"""Frequency caps per user and per category over sliding windows.

Windows run on the request's created_at so replays decide the same. Critical notifications
and updates to a notification the user already has are never capped. The excess goes to
the user's digest or is dropped, as the category's policy says. An escalation is another
interruption: it counts, at the time it goes out.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kernel.keyed import KeyedStep, finished
from kernel.policy import USER_PER_HOUR, CategoryPolicy, policy_for

HOUR, DAY = timedelta(hours=1), timedelta(days=1)


class RateLimit(KeyedStep):
    def new_state(self) -> dict:
        return {"sent": []}  # (created_at, category), oldest first

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        if item["priority"] == "critical" or item["revision"] > 0:
            return [item]
        request = item["request"]
        at, category = now if item.get("escalation") else request["metadata"]["created_at"], request["category"]
        state["sent"] = [(t, c) for t, c in state["sent"] if at - t < DAY]
        policy = policy_for(category, request["tenant"])
        if reason := over_cap(state["sent"], at, category, policy):
            if policy.excess == "digest":
                return [{**item, "to_digest": reason}]
            return [finished(item, "rate_limited", reason)]
        state["sent"].append((at, category))
        return [item]

    def recheck(self, state: dict, item: dict, now: datetime) -> list[dict]:
        return self.handle(state, item, now) if item.get("escalation") else [item]


def over_cap(sent: list[tuple[datetime, str]], at: datetime, category: str,
             policy: CategoryPolicy | None = None) -> str | None:
    policy = policy or policy_for(category)
    last_hour = [c for t, c in sent if at - t < HOUR]
    if len(last_hour) >= USER_PER_HOUR:
        return f"user cap of {USER_PER_HOUR} per hour reached"
    if policy.per_hour is not None and last_hour.count(category) >= policy.per_hour:
        return f"{category} cap of {policy.per_hour} per hour reached"
    if policy.per_day is not None and sum(c == category for _, c in sent) >= policy.per_day:
        return f"{category} cap of {policy.per_day} per day reached"
    return None
