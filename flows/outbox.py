"""The end of the notification flow: delivery jobs for the outbox lanes, a status for every
outcome (on one channel when the outcome concerns only that channel), and dead letters with
the original bytes."""

from __future__ import annotations

from datetime import datetime

from kernel import records
from kernel.records import Outgoing
from kernel.requests import user_key
from kernel.topics import outbox_topic

LANE_BY_PRIORITY = {"critical": "critical", "high": "high", "normal": "normal", "low": "bulk"}


def lane_for(item: dict) -> str:
    """Campaigns and digests ride the bulk lane unless critical, so they never delay alerts."""
    request = item["request"]
    if item["priority"] != "critical" and (request["metadata"]["campaign_id"] or request["type"] == "marketing"
                                           or item.get("digest_items")):
        return "bulk"
    return LANE_BY_PRIORITY[item["priority"]]


def outgoing(item: dict, now: datetime) -> list[Outgoing]:
    """Everything the item produces."""
    outcome = item.get("outcome")
    if outcome == "dead_letter":
        return [records.dead_letter(item, now)]
    if outcome == "published":  # a record a step publishes as it is (the user's new preferences)
        return [item["outgoing"]]
    if outcome:
        return [records.status_record(status(item, outcome, item.get("outcome_channel"), now), item["source"]["key"])]
    lane, out, key = lane_for(item), [], user_key(item["request"]["tenant"], item["user_id"]).encode()
    for channel in item["route"]["send"]:
        out.append((outbox_topic(channel, lane), key, job(item, channel, lane)))
        out.append(records.status_record(status(item, "merged" if item["revision"] else "requested", channel, now)))
    return out


def job(item: dict, channel: str, lane: str) -> dict:
    request, rendered, user = item["request"], item["rendered"], item["user"]
    content, metadata = request["content"], request["metadata"]
    prefs = user["preferences"]
    return {
        "job_id": records.job_id({"notification_id": item["notification_id"], "tenant": request["tenant"],
                                  "user_id": item["user_id"], "revision": item["revision"]}, channel),
        "notification_id": item["notification_id"],
        "revision": item["revision"],
        "request_ids": [request["id"]],
        "user_id": item["user_id"],
        "tenant": request["tenant"],
        "channel": channel,
        "lane": lane,
        "kind": "digest" if item.get("digest_items") else "update" if item["revision"] else "single",
        "priority": item["priority"],
        "type": request["type"],
        "category": request["category"],
        "title": rendered["title"],
        "body": rendered["body"],
        "html_body": rendered["html_body"],
        "image_url": content["image_url"],
        "icon": content["icon"],
        "badge": content["badge"],
        "actions": content["actions"],
        "deep_link": metadata["deep_link"],
        "payload": metadata["payload"],
        "locale": rendered["locale"],
        "template_id": rendered["template_id"],
        "variant": rendered["variant"],
        "campaign_id": metadata["campaign_id"],
        "merge": item["merge"],
        "devices": [device_target(d) for d in user["devices"]],
        "address": address_for(channel, prefs),
        "fallback": [{**step, "address": address_for(step["channel"], prefs)} for step in item["route"]["fallback"]],
        "digest_items": item.get("digest_items") or [],
        # Updates and merges replace what the device shows instead of stacking a new notification.
        "collapse_key": item["notification_id"],
        "created_at": metadata["created_at"],
        "expires_at": metadata["expires_at"],
        "presentation": prefs["presentation"],
    }


ADDRESS_FIELDS = {"email": "email", "sms": "phone"}  # channel -> the preference holding its address


def address_for(channel: str, preferences: dict) -> str | None:
    field = ADDRESS_FIELDS.get(channel)
    return preferences[field] if field else None


def device_target(device: dict) -> dict:
    return {"device_id": device["device_id"], "platform": device["platform"], "token": device["token"],
            "web_push": device["web_push"]}


def status(item: dict, state: str, channel: str | None, now: datetime) -> dict:
    request = item["request"]
    return records.status(
        notification_id=item.get("notification_id") or request["id"], user_id=item["user_id"] or "",
        tenant=request["tenant"], state=state, channel=channel, category=request["category"],
        campaign_id=request["metadata"]["campaign_id"], variant=(item.get("rendered") or {}).get("variant"),
        created_at=request["metadata"]["created_at"], at=now,
        reason=item.get("reason") or "; ".join(item.get("why", ())) or None,
        cohort=item.get("cohort"), send_time=item.get("send_time"))
