"""What users do with their notifications, told to the flows as EngagementEvents on the engagement
topic, keyed by user: the notification flow stops escalating a notification once the user did
anything with it, and analytics counts it (with the notification's category, campaign and variant).

The gateway reports what it sees itself (read, unread, archive, read-all, delete in the center;
unsubscribes through signed links); clients report what only they see (a toast seen in a visible
tab, an open, a click, a dismissal)."""

from __future__ import annotations

from gateway.auth import User
from gateway.center import BadRequest, attribution
from gateway.publisher import Publisher
from kernel.clock import utcnow
from kernel.topics import CHANNELS, ENGAGEMENT

# A center change (gateway.hub.CHANGES, and delete) as the engagement it is.
CENTER_ACTIONS = {"read": "read", "unread": "unread", "archive": "archived", "delete": "deleted"}
# What clients may report through POST /api/engagement. The others are reported by the endpoints
# that make them happen, so no client can claim a read, a delete or an unsubscribe it did not make.
REPORTED_ACTIONS = ("seen", "opened", "clicked", "dismissed")
REPORT_FIELDS = {"notification_id", "action", "action_id", "device_id", "channel"}


def engagement_record(user: User, notification_id: str, action: str, attributed: dict, *, channel: str,
                      device_id: str | None = None, action_id: str | None = None) -> dict:
    """An EngagementEvent; `attributed` is the notification's category, campaign_id, variant and created_at."""
    return {"notification_id": notification_id, "user_id": user.id, "action": action, "action_id": action_id,
            "device_id": device_id, "channel": channel, "at": utcnow(), "created_at": None, **attributed,
            "tenant": user.tenant}


def parse_report(body: dict) -> dict:
    """A client's report, checked: the fields of an EngagementEvent a client may set, with channel
    defaulting to in_app. Raises BadRequest with the reason."""
    if unknown := sorted(set(body) - REPORT_FIELDS):
        raise BadRequest(f"unknown fields {', '.join(unknown)}")
    if not isinstance(body.get("notification_id"), str) or not body["notification_id"]:
        raise BadRequest("notification_id must be a non-empty string")
    if body.get("action") not in REPORTED_ACTIONS:
        raise BadRequest(f"action must be one of {', '.join(REPORTED_ACTIONS)} (read, unread, archive and delete "
                         "are reported by the notification-center endpoints, unsubscribes by /unsubscribe)")
    for optional in ("action_id", "device_id"):
        if body.get(optional) is not None and not isinstance(body[optional], str):
            raise BadRequest(f"{optional} must be a string or null")
    channel = body.get("channel", "in_app")
    if channel not in CHANNELS:
        raise BadRequest(f"channel must be one of {', '.join(CHANNELS)}")
    return {"notification_id": body["notification_id"], "action": body["action"], "channel": channel,
            "action_id": body.get("action_id"), "device_id": body.get("device_id")}


class Engagements:
    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def publish(self, record: dict) -> None:
        self.publisher.publish(ENGAGEMENT, record)

    def center_change(self, user: User, change: str, rows: list[dict], device_id: str | None) -> None:
        """One engagement per notification a center change (read, unread, archive, delete) changed;
        `rows` as clients see them, or the attribution Center.delete returns with the id added."""
        for row in rows:
            self.publish(engagement_record(user, row["id"], CENTER_ACTIONS[change], attribution(row),
                                           channel="in_app", device_id=device_id))
