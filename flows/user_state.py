"""Joins each notification with its user's latest preferences, devices and presence.

The compacted user-state topics feed this stage's state; notifications leave it carrying a
snapshot of that state, so later stages decide without any lookup of their own. What was held
back gets a fresh snapshot when it is released. An unsubscribe (from an email's one-click link)
changes the preferences here at once and publishes them, merged, as the user's new preferences.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from kernel.keyed import KeyedStep, finished
from kernel.policy import policy_for
from kernel.requests import DEFAULT_TENANT, preferences_record, routing_key, without_channel
from kernel.topics import DEVICES, PREFERENCES

# Gateways repeat "online" for every connected device (the gateway's PRESENCE_REFRESH_S); a device
# not heard of for this long is offline, so a gateway that died cannot keep its users "online".
PRESENCE_TTL = timedelta(seconds=90)


def default_preferences(user_id: str, tenant: str = DEFAULT_TENANT) -> dict:
    """What a user who never opened the settings gets: everything on, no marketing without consent."""
    return {"user_id": user_id, "tenant": tenant, "enabled": True, "quiet_hours": None, "digest": None, "channels": {},
            "categories": {}, "marketing_consent": False, "email": None, "phone": None, "locale": None,
            "timezone": "UTC", "deleted": False, "presentation": None}


class JoinUserState(KeyedStep):
    def new_state(self) -> dict:
        return {"preferences": None, "devices": {}, "online": {}}

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        if item["kind"] == "user_state":
            apply_update(state, item["topic"], item["record"])
            return []
        created_at = item["request"]["metadata"]["created_at"]
        return [{**item, "user": view(state, item["user_id"], created_at, item["tenant"])}]

    def is_empty(self, state: dict) -> bool:
        return state["preferences"] is None and not state["devices"] and not state["online"]

    def forgets(self, item: dict) -> bool:
        return item["kind"] == "user_state" and item["topic"] == PREFERENCES and item["record"]["deleted"]

    def recheck(self, state: dict, item: dict, now: datetime) -> list[dict]:
        return [{**item, "user": view(state, item["user_id"], now, item["tenant"])}]

    def hears(self, item: dict) -> bool:
        return item["kind"] == "engagement" and item["record"]["action"] == "unsubscribed"

    def hear(self, state: dict, item: dict, now: datetime) -> list[dict]:
        engagement = item["record"]
        if not engagement["category"]:
            return []
        current = state["preferences"] or default_preferences(item["user_id"], item["tenant"])
        merged = preferences_record(**{
            **without_channel(current, engagement["category"], engagement["channel"] or "email",
                              withdraw_consent=policy_for(engagement["category"], item["tenant"]).consent_required),
            "updated_at": now, "deleted": False})
        state["preferences"] = merged
        return [finished({"kind": "preferences", "user_id": item["user_id"]}, "published",
                         f"unsubscribed from {engagement['category']} by {engagement['channel'] or 'email'}",
                         outgoing=(PREFERENCES, routing_key(merged), merged))]


def apply_update(state: dict, topic: str, record: dict) -> None:
    if topic == PREFERENCES:
        # A deleted record is the erasure tombstone: forget everything about the user.
        if record["deleted"]:
            state.update(preferences=None, devices={}, online={})
        else:
            state["preferences"] = record
    elif topic == DEVICES:
        if record["active"]:
            state["devices"][record["device_id"]] = record
        else:
            state["devices"].pop(record["device_id"], None)
            state["online"].pop(record["device_id"], None)
    else:
        state["online"] = {device: seen for device, seen in state["online"].items()
                           if record["at"] - seen < PRESENCE_TTL and device != record["device_id"]}
        if record["status"] == "online":
            state["online"][record["device_id"]] = record["at"]


def view(state: dict, user_id: str, at: datetime, tenant: str = DEFAULT_TENANT) -> dict:
    """The user as of `at` (the notification's creation, so a replay sees the same)."""
    online = state["online"]
    return {"preferences": state["preferences"] or default_preferences(user_id, tenant),
            "devices": list(state["devices"].values()),
            "online": bool(online) and any(at - seen < PRESENCE_TTL for seen in online.values())}
