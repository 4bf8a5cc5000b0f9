"""Digest windows: notifications that can wait are collected per user and leave as one digest
at the user's chosen local time (hourly, daily or weekly). Capped excess whose category says
"digest" joins the next hourly digest when the user has no digest schedule of their own."""

from __future__ import annotations

from datetime import datetime

from markupsafe import escape

from kernel.policy import policy_for
from kernel.keyed import KeyedStep, finished
from kernel.schedule import ScheduleError, next_digest_at

MAX_DIGEST_ITEMS = 50


def schedule_for(preferences: dict) -> dict:
    digest = preferences["digest"]
    if digest and digest["enabled"]:
        return digest
    return {"enabled": True, "frequency": "hourly", "time": "00:00", "timezone": preferences["timezone"]}


def waits_for_digest(item: dict) -> str | None:
    """Why the item joins the digest instead of going out now, or None."""
    if item.get("to_digest"):
        return item["to_digest"]
    digest = item["user"]["preferences"]["digest"]
    if (digest and digest["enabled"] and item["priority"] in ("low", "normal") and item["revision"] == 0
            and policy_for(item["request"]["category"]).digestible):
        return f"{digest['frequency']} digest"
    return None


class Digest(KeyedStep):
    def new_state(self) -> dict:
        return {"entries": [], "due": None, "last": None}

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        reason = waits_for_digest(item)
        if reason is None:
            return [item]
        state["entries"].append(entry(item))
        state["last"] = item
        if state["due"] is None:
            try:
                state["due"] = next_digest_at(schedule_for(item["user"]["preferences"]), now)
            except ScheduleError:
                state["due"] = next_digest_at(schedule_for({"digest": None, "timezone": "UTC"}), now)
        return [finished(item, "digested", reason)]

    def due(self, state: dict) -> datetime | None:
        return state["due"]

    def release(self, state: dict, now: datetime) -> list[dict]:
        if state["due"] is None or state["due"] > now:
            return []
        digest = digest_item(state["last"], state["entries"], state["due"])
        state.update(entries=[], due=None, last=None)
        return [digest]

    def is_empty(self, state: dict) -> bool:
        return not state["entries"]


def entry(item: dict) -> dict:
    rendered = item["rendered"]
    return {"notification_id": item["notification_id"], "category": item["request"]["category"],
            "title": rendered["title"], "body": rendered["body"],
            "created_at": item["request"]["metadata"]["created_at"]}


def digest_item(last: dict, entries: list[dict], window_end: datetime) -> dict:
    """One notification summarising the window, routed to email when the user can get it."""
    entries = entries[-MAX_DIGEST_ITEMS:]
    user_id = last["user_id"]
    notification_id = f"digest:{user_id}:{window_end.strftime('%Y%m%dT%H%M')}"
    prefs = last["user"]["preferences"]
    channel = "email" if prefs["email"] and "email" in last["channels"] else "in_app"
    if channel not in last["channels"]:
        return finished(last, "dropped", f"no channel for the digest of {len(entries)} notifications",
                        notification_id=notification_id)
    lines = [f"• {e['title']}" + (f": {e['body']}" if e["body"] else "") for e in entries]
    items_html = "".join(f"<li><strong>{escape(e['title'])}</strong> {escape(e['body'])}</li>" for e in entries)
    # The digest is its own notification: nothing of the last item's content or links carries over.
    request = {**last["request"], "id": notification_id, "category": "digest", "type": "info",
               "priority": "low", "scheduled_at": None, "idempotency_key": None, "channels": [],
               "content": {"title": "", "body": "", "image_url": None, "icon": None, "badge": None, "actions": []},
               "metadata": {**last["request"]["metadata"], "created_at": window_end, "expires_at": None,
                            "deep_link": None, "payload": {}, "campaign_id": None}}
    return {**last, "request": request, "notification_id": notification_id, "revision": 0, "merge": None,
            "priority": "low", "to_digest": None, "digest_items": entries,
            "rendered": {"title": f"{len(entries)} notifications you may have missed", "body": "\n".join(lines),
                         "html_body": f"<ul>{items_html}</ul>", "locale": last["rendered"]["locale"],
                         "variant": None, "template_id": None},
            "route": {"send": [channel], "fallback": []}}
