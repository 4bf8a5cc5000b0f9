"""Per-category delivery policy: how duplicates merge, how often a user may be told, what happens to
the excess, and how soon an unseen notification escalates. Categories not listed get DEFAULT."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

# Seconds after the first send: unseen by then, the next channel of the chain is tried.
ESCALATION = {"high": (120, 900, 1800), "normal": (300, 1800, 3600)}


@dataclass(frozen=True)
class CategoryPolicy:
    merge: str = "count"  # count | replace | accumulate
    per_hour: int | None = None  # frequency cap for this category, per user
    per_day: int | None = None
    excess: str = "digest"  # digest | drop: what a capped notification becomes
    consent_required: bool = False  # a legal requirement: not even critical notifications bypass it
    digestible: bool = True  # may wait for the user's digest instead of going out now
    # Per priority; low priority never escalates, critical goes out on every channel at once.
    escalation: dict[str, tuple[int, ...]] = field(default_factory=lambda: ESCALATION)


DEFAULT = CategoryPolicy(per_hour=30)
POLICIES = {
    "messages": CategoryPolicy(merge="count", per_hour=60),
    "social": CategoryPolicy(merge="accumulate", per_hour=20),
    "ci": CategoryPolicy(merge="replace", per_hour=30),
    "marketing": CategoryPolicy(merge="replace", per_day=2, excess="drop", consent_required=True),
    "security": CategoryPolicy(merge="replace", digestible=False, escalation={"high": (60, 300), "normal": (120, 900)}),
    "billing": CategoryPolicy(merge="replace", digestible=False),
}
# Across all categories: no one wants more than this many interruptions an hour.
USER_PER_HOUR = 60


def policy_for(category: str) -> CategoryPolicy:
    return POLICIES.get(category, DEFAULT)


def escalation_delays(category: str, priority: str, scale: float | None = None) -> tuple[int, ...]:
    """When each next channel is tried if the notification is still unseen, in seconds after the first
    send. NOTIFYFLOW_ESCALATION_SCALE (default 1) multiplies them: 0.01 turns 5 minutes into 3 s for
    demos and tests."""
    if scale is None:
        return _scaled_delays(category, priority, os.environ.get("NOTIFYFLOW_ESCALATION_SCALE", "1"))
    return tuple(max(1, round(delay * scale)) for delay in policy_for(category).escalation.get(priority, ()))


@functools.lru_cache(maxsize=1024)
def _scaled_delays(category: str, priority: str, scale: str) -> tuple[int, ...]:
    """escalation_delays for the environment's scale (asked for every notification routed)."""
    return escalation_delays(category, priority, float(scale))
