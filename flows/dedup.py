"""Dedup and merge (the seed's algorithm): the same content within five minutes updates the
notification the user already has instead of sending another one.

Windows run on the request's own created_at, not the wall clock, so a replay after a crash
makes exactly the same decisions and produces exactly the same jobs. The state holds its instants as
epoch milliseconds: a user's state is pickled at every snapshot, and a datetime costs pickle ten times
what an int does (bench.e2e's p99 was the snapshot pause; README, "Where the time goes").
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from kernel.keyed import KeyedStep, finished
from kernel.policy import policy_for
from schemas.writer import millis

WINDOW_MS = 5 * 60_000
# Long enough to catch an upstream re-publishing the same request after its own retries.
REQUEST_ID_MEMORY_MS = 24 * 3_600_000
MAX_ITEMS = 10


def content_hash(request: dict) -> str:
    content = request["content"]
    parts = (content["title"], content["body"], request["type"], request["idempotency_key"] or "")
    if request["template_id"]:  # the template and its variables are the content too
        parts += (request["template_id"], json.dumps(request["template_vars"], sort_keys=True))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class DedupMerge(KeyedStep):
    def new_state(self) -> dict:
        return {"windows": {}, "request_ids": {}, "clock": None}

    def handle(self, state: dict, item: dict, now: datetime) -> list[dict]:
        request = item["request"]
        at = millis(request["metadata"]["created_at"])
        clock = forget_old(state, at)
        seen_at = state["request_ids"].get(request["id"])
        if seen_at is not None and clock - seen_at < REQUEST_ID_MEMORY_MS:
            return [finished(item, "deduplicated", f"request {request['id']} was already processed")]
        state["request_ids"][request["id"]] = at
        key = content_hash(request)
        window = state["windows"].get(key)
        if window is None or clock - window["first_at"] >= WINDOW_MS:
            state["windows"].pop(key, None)  # re-inserted at the end, where the newest belong
            state["windows"][key] = {"notification_id": request["id"], "first_at": at, "count": 1,
                                     "items": [summary(request)]}
            return [{**item, "notification_id": request["id"], "revision": 0, "merge": None}]
        window["count"] += 1
        window["items"] = (window["items"] + [summary(request)])[-MAX_ITEMS:]
        return [merged(item, window)]

    def is_empty(self, state: dict) -> bool:
        return not state["windows"] and not state["request_ids"]

    def forget(self, state: dict, item: dict) -> None:
        """Neither a duplicate when replayed, nor a notification for later copies to merge into."""
        request = item["request"]
        state["request_ids"].pop(request["id"], None)
        key = content_hash(request)
        window = state["windows"].get(key)
        if window is not None and window["notification_id"] == item["notification_id"] and window["count"] == 1:
            del state["windows"][key]


def forget_old(state: dict, at: int) -> int:
    """Drop expired entries from the front (entries are kept in arrival order, oldest first);
    one that arrived out of order waits its turn, and lookups ignore it once expired."""
    in_millis(state)
    clock = state["clock"] = max(state["clock"] or at, at)
    windows, request_ids = state["windows"], state["request_ids"]
    while windows and clock - windows[first := next(iter(windows))]["first_at"] >= WINDOW_MS:
        del windows[first]
    while request_ids and clock - request_ids[first := next(iter(request_ids))] >= REQUEST_ID_MEMORY_MS:
        del request_ids[first]
    return clock


def in_millis(state: dict) -> None:
    """A state resumed from a snapshot taken before the instants were milliseconds, converted."""
    if isinstance(state["clock"], datetime):
        state["clock"] = millis(state["clock"])
        state["request_ids"] = {request_id: millis(at) for request_id, at in state["request_ids"].items()}
        for window in state["windows"].values():
            window["first_at"] = millis(window["first_at"])


def summary(request: dict) -> str:
    return request["content"]["body"] or request["content"]["title"]


def merged(item: dict, window: dict) -> dict:
    """The update to the notification the user already has, per the category's merge strategy."""
    request = item["request"]
    strategy, count = policy_for(request["category"], request["tenant"]).merge, window["count"]
    content = dict(request["content"])
    if strategy == "count":
        content["body"] = f"{count} new {request['category']}"
    elif strategy == "accumulate":
        content["body"] = "\n".join(window["items"])
    # replace: the latest content as it is
    return {**item, "request": {**request, "content": content}, "notification_id": window["notification_id"],
            "revision": count - 1, "merge": {"strategy": strategy, "count": count, "items": list(window["items"])}}
