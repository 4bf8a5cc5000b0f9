"""Quiet hours and scheduled sends: hold a notification until the user's quiet window ends
(or until its scheduled_at), instead of dropping it. Critical notifications are never held
by quiet hours. An escalation, or a notification held for its best send time, that comes due in
quiet hours waits for them to end too."""

from __future__ import annotations

from datetime import datetime

from kernel.validate import is_expired
from kernel.keyed import KeyedStep, finished
from kernel.schedule import ScheduleError, quiet_until


class QuietHours(KeyedStep):
    def new_state(self) -> dict:
        return {"held": []}

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        until = hold_until(item, now)
        if until is None:
            return [item]
        state["held"].append({"until": until, "item": item})
        return [finished(item, "deferred", f"held until {until.isoformat()}")]

    def recheck(self, state: dict, item: dict, now: datetime) -> list[dict]:
        # An escalation, or a notification held for the best send time, may come due in quiet hours
        # the user set meanwhile: it waits for them to end.
        return self.handle(state, item, now) if item.get("escalation") or "best_time" in item else [item]

    def due(self, state: dict) -> datetime | None:
        return min((held["until"] for held in state["held"]), default=None)

    def release(self, state: dict, now: datetime) -> list[dict]:
        ready = sorted((held for held in state["held"] if held["until"] <= now), key=lambda held: held["until"])
        state["held"] = [held for held in state["held"] if held["until"] > now]
        out = []
        # Several steps of one notification's escalation chain came due in the quiet window: the
        # user gets the furthest one only, not a burst of channels at once when it ends.
        furthest = {held["item"]["notification_id"]: held["item"] for held in ready if held["item"].get("escalation")}
        for held in ready:
            if held["item"].get("escalation") and furthest[held["item"]["notification_id"]] is not held["item"]:
                superseding = furthest[held["item"]["notification_id"]]["escalation"]["channel"]
                out.append(finished(held["item"], "dropped", f"superseded by the {superseding} escalation",
                                    outcome_channel=held["item"]["escalation"]["channel"]))
                continue
            if is_expired(held["item"]["request"], now):
                out.append(finished(held["item"], "expired", "expired while held"))
                continue
            # A scheduled send may come due inside quiet hours: it waits for the window to end too.
            until = hold_until(held["item"], now)
            if until is None:
                out.append(held["item"])
            else:
                state["held"].append({"until": until, "item": held["item"]})
        return out


def hold_until(item: dict, now: datetime) -> datetime | None:
    scheduled = item["request"]["scheduled_at"]
    if scheduled is not None and scheduled > now:
        return scheduled
    if item["priority"] == "critical":
        return None
    try:
        return quiet_until(item["user"]["preferences"]["quiet_hours"], now)
    except ScheduleError:
        return None  # unusable settings must not silence the user forever; the gateway validates on save
