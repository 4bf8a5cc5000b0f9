"""Applies what the user asked for: global switch, categories, channels, marketing consent.

Critical notifications bypass the user's opt-outs (a security alert reaches a user who muted
everything) but never a legal requirement such as marketing consent. The same check runs again
on whatever was held back (quiet hours, schedules, digests, escalations) when it is released:
an opt-out made while it waited wins.
"""

from __future__ import annotations

from flows.digest import with_entries
from kernel.keyed import finished
from kernel.policy import policy_for
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
    if item.get("digest_items"):
        return digest_still_wanted({**item, "priority": priority, "channels": channels}, prefs)
    return {**item, "priority": priority, "channels": channels}


def digest_still_wanted(digest: dict, prefs: dict) -> dict:
    """A digest keeps the entries whose categories the user still wants (and has consented to)."""
    kept = [entry for entry in digest["digest_items"] if category_wanted(prefs, entry["category"])]
    if not kept:
        return finished(digest, "dropped", "the user turned off everything this digest held")
    return digest if kept == digest["digest_items"] else with_entries(digest, kept)


def category_wanted(prefs: dict, category: str) -> bool:
    settings = prefs["categories"].get(category)
    return ((not policy_for(category).consent_required or prefs["marketing_consent"])
            and (settings is None or settings["enabled"]))


def channel_allows(prefs: dict, channel: str, category: str, priority: str) -> bool:
    settings = prefs["channels"].get(channel)
    if settings is None:
        return True
    if not settings["enabled"]:
        return False
    if settings["emergency_only"] and priority != "critical":
        return False
    return not settings["categories"] or category in settings["categories"]
