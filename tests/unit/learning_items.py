"""Builders for the tests of what the flow learns from engagement: the real per-user steps
(flows/notifications.py per_user_steps) with every user treated, fed real Avro records."""

from __future__ import annotations

from datetime import datetime

from flows.learning import Learning
from flows.notifications import per_user_steps
from flows.outbox import outgoing
from kernel.keyed import KeyedPipeline
from kernel.topics import ENGAGEMENT

from flow_items import NOW, Pipeline, device, request, sample_catalog, user_records, user_state_item

EMAIL = "alice@example.com"


def steps_for(learning: Learning | None = None, **prefs) -> tuple[KeyedPipeline, dict]:
    """The per-user steps for an offline user with a phone and an email address (everyone treated)."""
    steps = per_user_steps(sample_catalog(), learning or Learning(holdout_percent=0))
    state = steps.new_state()
    items = [user_state_item(topic, record) for topic, record in user_records(
        "alice", devices=[device()], **{"email": EMAIL, **prefs})]
    assert steps.process(state, items, NOW) == []
    return steps, state


def keyed(req, now: datetime = NOW) -> list[dict]:
    """The request as it reaches the per-user steps, decoded and validated at `now`."""
    items = Pipeline(until="expand_audience").run(req, now=now)
    assert not any(item.get("outcome") for item in items), items
    return items


def engagement(notification_id: str, action: str, at: datetime, channel: str = "push", **fields) -> dict:
    record = {"notification_id": notification_id, "user_id": "alice", "action": action, "action_id": None,
              "device_id": "phone-1", "channel": channel, "at": at, "campaign_id": None, "variant": None,
              "category": "social", **fields}
    return user_state_item(ENGAGEMENT, record)


def opens(times: list[datetime], channel: str = "push") -> list[dict]:
    """Opens of notifications the flow never sent (history from before): they teach the hours only."""
    return [engagement(f"old-{n}", "opened", at, channel) for n, at in enumerate(times)]


def optimal(**fields) -> dict:
    return request(**{"category": "social", "send_time": "optimal", **fields})


def statuses(items, now: datetime = NOW) -> list[tuple[str, str | None, str | None]]:
    """(status, channel, reason) of every status the items produce; jobs as ("job", channel, None)."""
    out = []
    for topic, _, value in [record for item in items for record in outgoing(item, now)]:
        out.append(("job", value["channel"], None) if topic.startswith("notify.outbox.")
                   else (value["status"], value["channel"], value["reason"]))
    return out
