"""Applies what the user asked for: global switch, categories, channels, marketing consent.

Critical notifications bypass the user's opt-outs (a security alert reaches a user who muted
everything) but never a legal requirement such as marketing consent.
"""

from __future__ import annotations

from kernel.policy import policy_for
from kernel.keyed import finished
from kernel.topics import CHANNELS

PRIORITIES = ("low", "normal", "high", "critical")


def apply(item: dict) -> dict:
    request, prefs = item["request"], item["user"]["preferences"]
    category = request["category"]
    needs_consent = policy_for(category).consent_required or request["type"] == "marketing"
    if needs_consent and not prefs["marketing_consent"]:
        return finished(item, "dropped", "no marketing consent")
    category_settings = prefs["categories"].get(category)
    priority = request["priority"]
    if category_settings and category_settings["priority_override"] in PRIORITIES:
        priority = category_settings["priority_override"]
    critical = priority == "critical"
    if not prefs["enabled"] and not critical:
        return finished(item, "dropped", "notifications are turned off")
    if category_settings and not category_settings["enabled"] and not critical:
        return finished(item, "dropped", f"category {category} is turned off")
    channels = [channel for channel in CHANNELS if critical or channel_allows(prefs, channel, category, priority)]
    if category_settings and category_settings["channels"] and not critical:
        channels = [channel for channel in channels if channel in category_settings["channels"]]
    if not channels:
        return finished(item, "dropped", f"every channel is turned off for {category}")
    return {**item, "priority": priority, "channels": channels}


def channel_allows(prefs: dict, channel: str, category: str, priority: str) -> bool:
    settings = prefs["channels"].get(channel)
    if settings is None:
        return True
    if not settings["enabled"]:
        return False
    if settings["emergency_only"] and priority != "critical":
        return False
    return not settings["categories"] or category in settings["categories"]
