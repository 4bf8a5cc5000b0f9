"""Best send time: a non-urgent notification that asks for it (`send_time: optimal`, or its category's
policy) is held until the hour the user opens and clicks most, learned in their local time
(flows/profile.py), within a window after its creation (default 24 h): never past its `expires_at`,
never into the user's quiet hours. With thin history (fewer than NOTIFYFLOW_SEND_TIME_MIN_EVENTS
opens and clicks) or when now is as good as any hour ahead, it goes now.

Held items live in the user's snapshotted state, so they survive restarts. At release the steps before
this one check them again as things are now (preferences, consent, and quiet hours, which the user may
have set meanwhile); the caps count them at the hour they go out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flows import profile
from flows.escalation import waiting
from flows.learning import NON_URGENT, Learning, treated
from kernel.validate import is_expired
from kernel.keyed import KeyedStep, explained, finished
from kernel.schedule import ScheduleError, parse_zone, quiet_until

HOUR = timedelta(hours=1)


class BestSendTime(KeyedStep):
    def __init__(self, learning: Learning | None = None) -> None:
        self.learning = learning or Learning.from_env()

    def new_state(self) -> dict:
        return {}  # "held": [{"until", "item"}], once something is

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        if item["revision"] and (held := self.holding(state, item["notification_id"])) is not None:
            # An update of a notification still held (a merge): it waits in its place, not ahead of it.
            held["item"] = {**waiting(item), "best_time": held["until"]}
            return [finished(item, "deferred", f"held for the best send time until {held['until'].isoformat()}, "
                                               "with the notification it updates")]
        if not wanted(item, self.learning):
            return [item]
        found = self.best_time(item, now)
        if found is None:
            return [item]
        until, why = found
        state.setdefault("held", []).append({"until": until, "item": {**waiting(item), "best_time": until}})
        return [finished(item, "deferred", f"held for the best send time until {until.isoformat()} ({why})")]

    def best_time(self, item: dict, now: datetime) -> tuple[datetime, str] | None:
        user, request = item["user"], item["request"]
        learned = user.get("profile") or {}
        history = profile.events(learned, now, self.learning.half_life_s)
        if history < self.learning.min_events:
            return None
        deadline = request["metadata"]["created_at"] + self.learning.window
        if (expires := request["metadata"]["expires_at"]) is not None:
            deadline = min(deadline, expires - timedelta(seconds=1))
        try:
            zone = parse_zone(user["preferences"]["timezone"], "timezone")
            chosen = best_hour(profile.hour_scores(learned), zone, user["preferences"]["quiet_hours"], now, deadline)
        except ScheduleError:
            return None  # unusable settings: now, rather than a guess
        if chosen is None:
            return None
        return chosen, (f"{chosen.astimezone(zone):%H:%M} {zone.key} is when the user opens most, "
                        f"learned from {history:.0f} recent opens and clicks")

    def holding(self, state: dict, notification_id: str) -> dict | None:
        return next((held for held in state.get("held", ()) if held["item"]["notification_id"] == notification_id),
                    None)

    def due(self, state: dict) -> datetime | None:
        return min((held["until"] for held in state.get("held", ())), default=None)

    def release(self, state: dict, now: datetime) -> list[dict]:
        ready = sorted((held for held in state["held"] if held["until"] <= now), key=lambda held: held["until"])
        state["held"] = [held for held in state["held"] if held["until"] > now]
        if not state["held"]:
            del state["held"]
        return [finished(held["item"], "expired", "expired while held for the best send time")
                if is_expired(held["item"]["request"], now)
                else explained(held["item"], f"sent at the best send time, {held['until'].isoformat()}")
                for held in ready]

    def is_empty(self, state: dict) -> bool:
        return not state


def wanted(item: dict, learning: Learning) -> bool:
    return (item.get("send_time") == "optimal" and "best_time" not in item and item["priority"] in NON_URGENT
            and item["revision"] == 0 and not item.get("escalation") and treated(item, "send_time", learning))


def best_hour(scores: list[float], zone, quiet_hours: dict | None, now: datetime,
              deadline: datetime) -> datetime | None:
    """The start of the local hour, after now and no later than `deadline`, outside quiet hours, that
    scores best; None when no hour ahead beats now (ties go to the earliest, so to now)."""
    best_at, best_score = None, scores[profile.hour_of_week(now, zone)]
    # Whole local hours, stepped in real time: across DST a skipped hour never comes, a repeated one twice.
    start = now.astimezone(zone).replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    candidate = start + HOUR
    while candidate <= deadline:
        score = scores[profile.hour_of_week(candidate, zone)]
        if score > best_score and quiet_until(quiet_hours, candidate) is None:
            best_at, best_score = candidate, score
        candidate += HOUR
    return best_at
