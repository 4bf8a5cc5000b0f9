"""Learning from engagement, as one per-user step: the user's engagement profile (flows/profile.py)
learns from every engagement event and from every notification that goes out, and each notification
leaves this step carrying the profile (`item["user"]["profile"]`), its cohort and whether it asks for
the best send time, for the steps that act on them: best send time (flows/send_time.py), channel
affinity (flows/channels.py) and fatigue (flows/rate_limit.py).

A deterministic holdout (NOTIFYFLOW_HOLDOUT_PERCENT of each tenant's users, default 10, by a hash of
tenant and user) is learned about alike but gets the plain behaviour, so analytics can compare the
two cohorts (every status carries its cohort; views sto_uplift and fatigue_effect).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from flows import profile
from kernel.keyed import KeyedStep
from kernel.policy import learns, policy_for

NON_URGENT = ("low", "normal")


@dataclass(frozen=True)
class Learning:
    half_life: timedelta = timedelta(days=14)  # how fast the profile forgets
    min_events: float = 5.0  # opens and clicks before the best send time is trusted; fewer: send now
    window: timedelta = timedelta(hours=24)  # how long past its creation a notification may be held
    holdout_percent: float = 10.0
    fatigue_threshold: float = 0.7  # ignored share above which a category's cap is lowered
    fatigue_min_delivered: float = 5.0  # delivered (decayed) before the ignored share counts
    fatigue_per_day: int = 3  # the lowered cap at the threshold; less the more is ignored, at least 1
    switched_off: str = ""  # category:part pairs that learn nothing (kernel.policy.learns)

    @classmethod
    def from_env(cls, environ=os.environ) -> Learning:
        def number(name: str, default: float) -> float:
            try:
                return float(environ.get(name, default))
            except ValueError:
                raise ValueError(f"{name} must be a number") from None

        return cls(half_life=timedelta(days=number("NOTIFYFLOW_PROFILE_HALF_LIFE_DAYS", 14)),
                   min_events=number("NOTIFYFLOW_SEND_TIME_MIN_EVENTS", 5),
                   window=timedelta(hours=number("NOTIFYFLOW_SEND_TIME_WINDOW_HOURS", 24)),
                   holdout_percent=number("NOTIFYFLOW_HOLDOUT_PERCENT", 10),
                   fatigue_threshold=number("NOTIFYFLOW_FATIGUE_THRESHOLD", 0.7),
                   fatigue_min_delivered=number("NOTIFYFLOW_FATIGUE_MIN_DELIVERED", 5),
                   fatigue_per_day=int(number("NOTIFYFLOW_FATIGUE_PER_DAY", 3)),
                   switched_off=environ.get("NOTIFYFLOW_LEARNING_OFF", ""))

    @functools.cached_property
    def half_life_s(self) -> float:
        return self.half_life.total_seconds()


DEFAULTS = Learning()


@functools.lru_cache(maxsize=65_536)  # asked for every notification; users come back
def cohort(tenant: str, user_id: str, holdout_percent: float) -> str:
    """`holdout` for a fixed share of each tenant's users, the same on every worker and every run."""
    digest = hashlib.blake2b(f"{tenant}\x00{user_id}".encode(), digest_size=8).digest()
    return "holdout" if int.from_bytes(digest, "big") % 10_000 < holdout_percent * 100 else "treated"


def asks_best_time(item: dict, learning: Learning) -> bool:
    """Whether the notification asks for the best send time: the request says `optimal`, or says
    nothing and its category's policy does; never urgent ones, never where the category switched it off."""
    request = item["request"]
    wanted = request.get("send_time") or policy_for(request["category"], request["tenant"]).send_time
    return (wanted == "optimal" and request["priority"] in NON_URGENT and request["scheduled_at"] is None
            and learns(request["category"], "send_time", learning.switched_off, request["tenant"]))


class LearnEngagement(KeyedStep):
    def __init__(self, learning: Learning | None = None) -> None:
        self.learning = learning or Learning.from_env()

    def new_state(self) -> dict:
        return {}

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        # The user view join_user_state just made is this item's own: it carries the live profile.
        user = item["user"]
        timezone = user["preferences"]["timezone"]
        if state.get("tz") != timezone:
            state["tz"] = timezone
        user["profile"] = state
        request = item["request"]
        item["cohort"] = cohort(request["tenant"], item["user_id"], self.learning.holdout_percent)
        if asks_best_time(item, self.learning):  # absent otherwise: held copies of the item stay small
            item["send_time"] = "optimal"
        else:
            item.pop("send_time", None)
        return [item]

    def recheck(self, state: dict, item: dict, now: datetime) -> list[dict]:
        return self.handle(state, item, now)

    def hears(self, item: dict) -> bool:
        return item["kind"] == "engagement"

    def hear(self, state: dict, item: dict, now: datetime) -> list[dict]:
        profile.learn(state, item["record"], now, self.learning.half_life_s)
        return []

    def went_out(self, state: dict, item: dict, now: datetime) -> None:
        profile.delivered(state, item, now, self.learning.half_life_s)

    def is_empty(self, state: dict) -> bool:
        return not (state.get("hours") or state.get("pending") or state.get("channels"))


def treated(item: dict, part: str, learning: Learning) -> bool:
    """Whether `part` (send_time, fatigue, affinity) may act on the item: a treated user's
    non-critical notification of a category that learns it."""
    return (item.get("cohort") == "treated" and item["priority"] != "critical"
            and learns(item["request"]["category"], part, learning.switched_off, item["request"]["tenant"]))
