"""Per-category delivery policy: how duplicates merge, how often a user may be told, and what
happens to the excess. Categories not listed get DEFAULT."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CategoryPolicy:
    merge: str = "count"  # count | replace | accumulate
    per_hour: int | None = None  # frequency cap for this category, per user
    per_day: int | None = None
    excess: str = "digest"  # digest | drop: what a capped notification becomes
    consent_required: bool = False  # a legal requirement: not even critical notifications bypass it
    digestible: bool = True  # may wait for the user's digest instead of going out now


DEFAULT = CategoryPolicy(per_hour=30)
POLICIES = {
    "messages": CategoryPolicy(merge="count", per_hour=60),
    "social": CategoryPolicy(merge="accumulate", per_hour=20),
    "ci": CategoryPolicy(merge="replace", per_hour=30),
    "marketing": CategoryPolicy(merge="replace", per_day=2, excess="drop", consent_required=True),
    "security": CategoryPolicy(merge="replace", digestible=False),
    "billing": CategoryPolicy(merge="replace", digestible=False),
}
# Across all categories: no one wants more than this many interruptions an hour.
USER_PER_HOUR = 60


def policy_for(category: str) -> CategoryPolicy:
    return POLICIES.get(category, DEFAULT)
