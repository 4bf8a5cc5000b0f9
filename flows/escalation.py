"""Escalation if unseen: a notification sent with a fallback chain ("push after 5 min, then email
after 30") waits here on a timer per step. When a timer fires and no device of the user reported
the notification seen, read, opened, clicked or dismissed, the next channel is tried: an
`escalated` status, and the notification on that channel, which the steps before this one check
again as things are now (preferences and consent, quiet hours, rate limits, frequency). Any
engagement with the notification cancels the rest of its chain.

Timers live in the user's snapshotted state, so a restart neither loses one nor, once the
snapshot holds its firing, fires it twice; a replay of the output after a crash repeats the same
job id, which the delivery claims send once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kernel.validate import is_expired
from kernel.keyed import KeyedStep, finished

# Engagement is remembered this long and this much, so a chain scheduled after the engagement
# was read (a replay after a crash reads the two topics in another order) is not started.
ENGAGED_FOR = timedelta(days=1)
MAX_ENGAGED = 200


class Escalation(KeyedStep):
    def new_state(self) -> dict:
        # chains: notification id -> {"due", "item", "steps"}; engaged: notification id -> when
        return {"chains": {}, "engaged": {}}

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        steps = item.get("route", {}).get("fallback")
        if steps and item["notification_id"] not in state["engaged"]:
            chain = state["chains"].get(item["notification_id"])
            # An update of the notification (a merge) keeps the clock the first send started.
            due = chain["due"] if chain else now + timedelta(seconds=steps[0]["after_seconds"])
            state["chains"][item["notification_id"]] = {"due": due, "item": waiting(item), "steps": steps}
        return [item]

    def hears(self, item: dict) -> bool:
        return item["kind"] == "engagement"

    def hear(self, state: dict, item: dict, now: datetime) -> list[dict]:
        engagement = item["record"]
        state["chains"].pop(engagement["notification_id"], None)
        engaged = state["engaged"]
        engaged[engagement["notification_id"]] = engagement["at"]
        for old in [n for n, at in engaged.items() if now - at > ENGAGED_FOR]:
            del engaged[old]
        while len(engaged) > MAX_ENGAGED:
            del engaged[min(engaged, key=engaged.get)]
        return []

    def due(self, state: dict) -> datetime | None:
        return min((chain["due"] for chain in state["chains"].values()), default=None)

    def release(self, state: dict, now: datetime) -> list[dict]:
        out = []
        for notification_id, chain in sorted(state["chains"].items(), key=lambda entry: entry[1]["due"]):
            if chain["due"] > now:
                continue
            del state["chains"][notification_id]
            item, (step, *rest) = chain["item"], chain["steps"]
            if is_expired(item["request"], now):
                out.append(finished(item, "expired", "expired before it was seen", outcome_channel=step["channel"]))
                continue
            # The rest of the chain counts from now, as it counted from the first send.
            later = [{**after, "after_seconds": after["after_seconds"] - step["after_seconds"]} for after in rest]
            if later:
                state["chains"][notification_id] = {
                    "due": now + timedelta(seconds=later[0]["after_seconds"]), "item": item, "steps": later}
            reason = f"not seen within {step['after_seconds']} s"
            out.append(finished(item, "escalated", f"{reason}: trying {step['channel']}",
                                outcome_channel=step["channel"]))
            out.append({**item, "route": {"send": [step["channel"]], "fallback": later},
                        "escalation": {"channel": step["channel"], "reason": reason}})
        return out

    def is_empty(self, state: dict) -> bool:
        return not state["chains"] and not state["engaged"]


# Looked up again when a held item is released (join_user_state, learn_engagement): not kept meanwhile.
LOOKED_UP = frozenset(("user", "cohort", "send_time"))


def waiting(item: dict) -> dict:
    """What a chain keeps of the notification: the user is looked up again when it fires."""
    return {key: value for key, value in item.items() if key not in LOOKED_UP}
