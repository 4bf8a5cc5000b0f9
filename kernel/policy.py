"""Per-category delivery policy: how duplicates merge, how often a user may be told, what happens to
the excess, and how soon an unseen notification escalates. Categories not listed get DEFAULT.

These are the built-in defaults. A tenant changes them per category (`notifyflow policies set`,
the `category_policies` table): the fields it sets replace the built-in ones, the rest stay. A
process that reads those changes (the notification flow) installs where they come from with
`use_overrides`; without it every tenant gets the built-in policies. Marketing consent
(`consent_required`) is a legal requirement, not a setting: it is not a tenant's to change.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from kernel.requests import DEFAULT_TENANT

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
    # What the engagement profile may change (flows/learning.py): "optimal" holds non-urgent notifications
    # to the user's best hour even when the request does not ask; "off" never, even when it does.
    send_time: str = "now"  # now | optimal | off
    fatigue: bool = True  # an ignored category gets a lower cap, its excess goes to the digest
    affinity: bool = True  # the channel the user answers most goes first, among those they allow


DEFAULT = CategoryPolicy(per_hour=30)
POLICIES = {
    "messages": CategoryPolicy(merge="count", per_hour=60),
    "social": CategoryPolicy(merge="accumulate", per_hour=20),
    "ci": CategoryPolicy(merge="replace", per_hour=30),
    "marketing": CategoryPolicy(merge="replace", per_day=2, excess="drop", consent_required=True),
    "security": CategoryPolicy(merge="replace", digestible=False, escalation={"high": (60, 300), "normal": (120, 900)},
                               send_time="off", fatigue=False, affinity=False),
    "billing": CategoryPolicy(merge="replace", digestible=False, send_time="off", fatigue=False),
}
# Across all categories: no one wants more than this many interruptions an hour.
USER_PER_HOUR = 60


# What a tenant may set, and what each field accepts.
SETTABLE = {"merge": ("count", "replace", "accumulate"), "excess": ("digest", "drop"),
            "send_time": ("now", "optimal", "off")}
FLAGS = ("digestible", "fatigue", "affinity")
CAPS = ("per_hour", "per_day")
ESCALATING = ("high", "normal")  # low never escalates; critical goes everywhere at once
Overrides = Mapping[tuple[str, str], CategoryPolicy]  # (tenant, category) -> the tenant's policy

_overrides: Callable[[], Overrides] = dict


def builtin(category: str) -> CategoryPolicy:
    return POLICIES.get(category, DEFAULT)


def policy_for(category: str, tenant: str = DEFAULT_TENANT) -> CategoryPolicy:
    """The tenant's policy for the category: its own if it set one, else the built-in one."""
    return _overrides().get((tenant, category)) or builtin(category)


def use_overrides(source: Callable[[], Overrides]) -> None:
    """Where this process reads tenants' policies from (called on every lookup; cache it there)."""
    global _overrides
    _overrides = source


def with_settings(category: str, settings: Mapping) -> CategoryPolicy:
    """The built-in policy of the category with a tenant's settings applied; ValueError says what is wrong."""
    if unknown := sorted(set(settings) - {*SETTABLE, *CAPS, *FLAGS, "escalation"}):
        raise ValueError(f"{unknown[0]} is not a policy setting; settable: "
                         f"{', '.join([*SETTABLE, *CAPS, *FLAGS, 'escalation'])}")
    for name, allowed in SETTABLE.items():
        if name in settings and settings[name] not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {settings[name]!r}")
    for name in CAPS:
        value = settings.get(name)
        if value is not None and (type(value) is not int or value <= 0):
            raise ValueError(f"{name} must be a positive whole number (or null for no cap), not {value!r}")
    for name in FLAGS:
        if name in settings and type(settings[name]) is not bool:
            raise ValueError(f"{name} must be true or false, not {settings[name]!r}")
    escalation = settings.get("escalation", builtin(category).escalation)
    if not isinstance(escalation, Mapping) or set(escalation) - set(ESCALATING) or not all(
            isinstance(delays, (list, tuple)) and all(type(d) is int and d > 0 for d in delays)
            for delays in escalation.values()):
        raise ValueError(f"escalation must map {' and/or '.join(ESCALATING)} to delays in whole seconds, "
                         f"not {escalation!r}")
    return replace(builtin(category), **{**settings, "escalation": {p: tuple(d) for p, d in escalation.items()}})


def escalation_delays(category: str, priority: str, scale: float | None = None,
                      tenant: str = DEFAULT_TENANT) -> tuple[int, ...]:
    """When each next channel is tried if the notification is still unseen, in seconds after the first
    send. NOTIFYFLOW_ESCALATION_SCALE (default 1) multiplies them: 0.01 turns 5 minutes into 3 s for
    demos and tests."""
    if scale is None:
        scale = _scale(os.environ.get("NOTIFYFLOW_ESCALATION_SCALE", "1"))
    return _scaled(policy_for(category, tenant).escalation.get(priority, ()), scale)


@functools.lru_cache(maxsize=8)
def _scale(text: str) -> float:
    """The environment's scale, parsed once (asked for every notification routed)."""
    return float(text)


@functools.lru_cache(maxsize=256)
def _scaled(delays: tuple[int, ...], scale: float) -> tuple[int, ...]:
    # Asked for every notification routed, with a few distinct policies' delays.
    return tuple(max(1, round(delay * scale)) for delay in delays)


LEARNED = ("send_time", "fatigue", "affinity")


@functools.lru_cache(maxsize=64)
def _switched_off(text: str) -> frozenset[tuple[str, ...]]:
    """NOTIFYFLOW_LEARNING_OFF parsed once: (category, part) pairs, either may be "*"."""
    return frozenset(tuple(entry.strip().split(":", 1)) for entry in text.split(",") if ":" in entry)


def learns(category: str, part: str, switched_off: str = "", tenant: str = DEFAULT_TENANT) -> bool:
    """Whether `part` of what is learned (send_time, fatigue, affinity) may act on `category`: the tenant's
    policy for it, unless `switched_off` (NOTIFYFLOW_LEARNING_OFF) lists it, e.g. "social:fatigue,*:affinity"."""
    if _switched_off(switched_off) & {(category, part), (category, "*"), ("*", part), ("*", "*")}:
        return False
    policy = policy_for(category, tenant)
    return policy.send_time != "off" if part == "send_time" else getattr(policy, part)
