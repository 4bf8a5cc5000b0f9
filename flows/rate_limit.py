"""Frequency caps per user and per category over sliding windows.

Windows run on the request's created_at so replays decide the same; the state holds them as epoch
milliseconds, cheap to pickle at every snapshot (flows/dedup.py says why). Critical notifications
and updates to a notification the user already has are never capped. The excess goes to
the user's digest or is dropped, as the category's policy says. An escalation is another
interruption: it counts, at the time it goes out.

Fatigue: when a treated user ignores a category (flows/profile.py), that category's daily cap is
lowered and the excess goes to the digest; critical notifications and categories whose policy has no
fatigue (security, billing) are never touched.
"""

from __future__ import annotations

from datetime import datetime

from flows import profile
from flows.learning import Learning, treated
from kernel.keyed import KeyedStep, finished
from kernel.policy import USER_PER_HOUR, CategoryPolicy, policy_for
from schemas.writer import millis

HOUR_MS, DAY_MS = 3_600_000, 86_400_000


class RateLimit(KeyedStep):
    def __init__(self, learning: Learning | None = None) -> None:
        self.learning = learning or Learning.from_env()

    def new_state(self) -> dict:
        return {"sent": []}  # (created_at in epoch ms, category), oldest first

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        if item["priority"] == "critical" or item["revision"] > 0:
            return [item]
        request = item["request"]
        # Held for the best send time: counted at the hour it goes out (planned, so a replay agrees).
        at = millis(now if item.get("escalation") else item.get("best_time") or request["metadata"]["created_at"])
        category = request["category"]
        state["sent"] = [(t, c) for t, c in in_millis(state["sent"]) if at - t < DAY_MS]
        policy = policy_for(category, request["tenant"])
        if reason := over_cap(state["sent"], at, category, policy):
            if policy.excess == "digest":
                return [{**item, "to_digest": reason}]
            return [finished(item, "rate_limited", reason)]
        if not item.get("escalation") and (reason := fatigued(item, state["sent"], category, self.learning)):
            return [{**item, "to_digest": reason, "fatigued": True}]
        state["sent"].append((at, category))
        return [item]

    def recheck(self, state: dict, item: dict, now: datetime) -> list[dict]:
        return self.handle(state, item, now) if item.get("escalation") else [item]


def in_millis(sent: list[tuple]) -> list[tuple[int, str]]:
    """`sent` as resumed from a snapshot taken before its instants were milliseconds, converted."""
    if sent and isinstance(sent[0][0], datetime):
        return [(millis(at), category) for at, category in sent]
    return sent


def over_cap(sent: list[tuple[int, str]], at: int, category: str,
             policy: CategoryPolicy | None = None) -> str | None:
    """`sent` and `at` in epoch milliseconds."""
    policy = policy or policy_for(category)
    last_hour = [c for t, c in sent if at - t < HOUR_MS]
    if len(last_hour) >= USER_PER_HOUR:
        return f"user cap of {USER_PER_HOUR} per hour reached"
    if policy.per_hour is not None and last_hour.count(category) >= policy.per_hour:
        return f"{category} cap of {policy.per_hour} per hour reached"
    if policy.per_day is not None and sum(c == category for _, c in sent) >= policy.per_day:
        return f"{category} cap of {policy.per_day} per day reached"
    return None


def fatigue_cap(item: dict, learning: Learning) -> tuple[int, float] | None:
    """(lowered daily cap, ignored share) when the user ignores the item's category above the threshold:
    the cap is `fatigue_per_day` at the threshold and falls with the share ignored, to 1; it lifts as
    answers come back and the share falls. Never for critical notifications or categories without fatigue."""
    learned, category = item["user"].get("profile") or {}, item["request"]["category"]
    counts = (learned.get("categories") or {}).get(category)
    if not counts or not counts[1] or not treated(item, "fatigue", learning):  # nothing ignored: no fatigue
        return None
    rate, delivered = profile.ignored_rate(learned, category, item["request"]["metadata"]["created_at"],
                                           learning.half_life_s)
    if delivered < learning.fatigue_min_delivered or rate <= learning.fatigue_threshold:
        return None
    return max(1, round(learning.fatigue_per_day * (1 - rate) / (1 - learning.fatigue_threshold))), rate


def fatigued(item: dict, sent: list[tuple[int, str]], category: str, learning: Learning) -> str | None:
    """Why the item joins the digest for fatigue, or None (`sent`: the last 24 h)."""
    if (found := fatigue_cap(item, learning)) is None:
        return None
    cap, rate = found
    if sum(c == category for _, c in sent) < cap:
        return None
    return f"fatigue: {rate:.0%} of {category} ignored lately, cap lowered to {cap} a day"
