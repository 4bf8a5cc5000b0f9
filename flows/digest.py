"""Digest windows: notifications that can wait are collected per user and leave as one digest
at the user's chosen local time (hourly, daily or weekly). Capped excess whose category says
"digest" joins the next hourly digest when the user has no digest schedule of their own.

A channel's own frequency (the user's email set to hourly or daily) holds back only that
channel's part of a notification: the in-app and push parts go now, the email part joins that
channel's digest, sent at the top of the hour or daily at the user's digest time (default 09:00),
in the user's time zone."""

from __future__ import annotations

from datetime import datetime

from markupsafe import escape

from kernel.keyed import KeyedStep, finished
from kernel.policy import policy_for
from kernel.schedule import ScheduleError, next_digest_at

MAX_DIGEST_ITEMS = 50
WHOLE = ""  # the window of whole notifications; the others are named after their channel
CHANNEL_FREQUENCIES = ("hourly", "daily")
DEFAULT_DAILY_TIME = "09:00"


def schedule_for(preferences: dict) -> dict:
    digest = preferences["digest"]
    if digest and digest["enabled"]:
        return digest
    return {"enabled": True, "frequency": "hourly", "time": "00:00", "timezone": preferences["timezone"]}


def channel_schedule(preferences: dict, frequency: str) -> dict:
    digest = preferences["digest"]
    return {"enabled": True, "frequency": frequency, "time": digest["time"] if digest else DEFAULT_DAILY_TIME,
            "timezone": preferences["timezone"]}


def can_wait(item: dict) -> bool:
    return (item["priority"] in ("low", "normal") and item["revision"] == 0
            and policy_for(item["request"]["category"], item["request"]["tenant"]).digestible)


def waits_for_digest(item: dict) -> str | None:
    """Why the whole item joins the digest instead of going out now, or None. (An escalation was
    sent already: only a channel's own frequency can hold it.)"""
    if item.get("to_digest"):
        return item["to_digest"]
    digest = item["user"]["preferences"]["digest"]
    if digest and digest["enabled"] and can_wait(item) and not item.get("escalation"):
        return f"{digest['frequency']} digest"
    return None


def held_channels(item: dict) -> dict[str, str]:
    """Channel -> frequency, for the channels of the route the user wants at most hourly or daily."""
    if not can_wait(item):
        return {}
    settings = item["user"]["preferences"]["channels"]
    return {channel: settings[channel]["frequency"] for channel in item["route"]["send"]
            if channel in settings and settings[channel]["frequency"] in CHANNEL_FREQUENCIES}


class Digest(KeyedStep):
    def new_state(self) -> dict:
        return {}  # window name -> {"entries", "due", "last"}

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        if reason := waits_for_digest(item):
            self.collect(state, WHOLE, item, schedule_for(item["user"]["preferences"]), now)
            return [finished(item, "digested", reason)]
        held = held_channels(item)
        out = []
        for channel, frequency in held.items():
            self.collect(state, channel, item, channel_schedule(item["user"]["preferences"], frequency), now)
            out.append(finished(item, "digested", f"{frequency} {channel} digest", outcome_channel=channel))
        if not held:
            return [item]
        send = [channel for channel in item["route"]["send"] if channel not in held]
        return out + ([{**item, "route": {**item["route"], "send": send}}] if send else [])

    def recheck(self, state: dict, item: dict, now: datetime) -> list[dict]:
        return self.handle(state, item, now) if item.get("escalation") else [item]

    def collect(self, state: dict, window: str, item: dict, schedule: dict, now: datetime) -> None:
        collecting = state.setdefault(window, {"entries": [], "due": None, "last": None})
        collecting["entries"].append(entry(item))
        collecting["last"] = item
        if collecting["due"] is None:
            try:
                collecting["due"] = next_digest_at(schedule, now)
            except ScheduleError:  # unusable settings: the next hour, rather than never
                collecting["due"] = next_digest_at(schedule_for({"digest": None, "timezone": "UTC"}), now)

    def due(self, state: dict) -> datetime | None:
        return min((window["due"] for window in state.values()), default=None)

    def release(self, state: dict, now: datetime) -> list[dict]:
        out = []
        for name, window in sorted(state.items(), key=lambda named: named[1]["due"]):
            if window["due"] <= now:
                out.append(digest_item(window["last"], window["entries"], window["due"], name or None))
                del state[name]
        return out

    def is_empty(self, state: dict) -> bool:
        return not state


def entry(item: dict) -> dict:
    rendered = item["rendered"]
    return {"notification_id": item["notification_id"], "category": item["request"]["category"],
            "title": rendered["title"], "body": rendered["body"],
            "created_at": item["request"]["metadata"]["created_at"]}


def digest_item(last: dict, entries: list[dict], window_end: datetime, channel: str | None = None) -> dict:
    """One notification summarising the window: on `channel` for a channel's own digest, else by
    email when the user can get it, or in the notification center."""
    entries = entries[-MAX_DIGEST_ITEMS:]
    user_id = last["user_id"]
    notification_id = f"digest:{user_id}:{channel + ':' if channel else ''}{window_end.strftime('%Y%m%dT%H%M')}"
    prefs = last["user"]["preferences"]
    channel = channel or ("email" if prefs["email"] and "email" in last["channels"] else "in_app")
    if channel not in last["channels"]:
        return finished(last, "dropped", f"no channel for the digest of {len(entries)} notifications",
                        notification_id=notification_id)
    # The digest is its own notification: nothing of the last item's content or links carries over.
    request = {**last["request"], "id": notification_id, "category": "digest", "type": "info",
               "priority": "low", "scheduled_at": None, "idempotency_key": None, "channels": [],
               "content": {"title": "", "body": "", "image_url": None, "icon": None, "badge": None, "actions": []},
               "metadata": {**last["request"]["metadata"], "created_at": window_end, "expires_at": None,
                            "deep_link": None, "payload": {}, "campaign_id": None}}
    return with_entries({**last, "request": request, "notification_id": notification_id, "revision": 0,
                         "merge": None, "priority": "low", "to_digest": None, "escalation": None,
                         "route": {"send": [channel], "fallback": []}}, entries)


def with_entries(digest: dict, entries: list[dict]) -> dict:
    """The digest listing `entries`, in its title, text and HTML."""
    lines = [f"• {e['title']}" + (f": {e['body']}" if e["body"] else "") for e in entries]
    items_html = "".join(f"<li><strong>{escape(e['title'])}</strong> {escape(e['body'])}</li>" for e in entries)
    return {**digest, "digest_items": entries,
            "rendered": {"title": f"{len(entries)} notifications you may have missed", "body": "\n".join(lines),
                         "html_body": f"<ul>{items_html}</ul>", "locale": digest["rendered"]["locale"],
                         "variant": None, "template_id": None}}
