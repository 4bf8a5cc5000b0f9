"""Rows wait, per source partition, for the next tick of one clock (every `wait`) or until
`rows` of them have come, so that an insert carries many: each insert costs ClickHouse a part
(tens of milliseconds however few its rows). The clock is the same for every partition, so the
partitions of a worker are released in the same step and the writer inserts them together.
What waits is keyed state, snapshotted with the input offsets, so a crash loses none of it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kernel.keyed import KeyedStep


class Batches(KeyedStep):
    """Items in, lists of items out: {"rows": [...]} counts its rows, anything else one."""

    def __init__(self, rows: int, wait: timedelta) -> None:
        self.rows, self.wait_s = rows, wait.total_seconds()

    def new_state(self) -> dict:
        return {"items": [], "rows": 0, "due": None}

    def process(self, state: dict, items: list[dict], now: datetime) -> list[list[dict]]:
        state["items"] += items
        state["rows"] += sum(len(item["rows"]) if "rows" in item else 1 for item in items)
        if state["rows"] >= self.rows:
            return self.release(state, now)
        if state["due"] is None:
            state["due"] = datetime.fromtimestamp((now.timestamp() // self.wait_s + 1) * self.wait_s, UTC)
        return []

    def due(self, state: dict) -> datetime | None:
        return state["due"]

    def release(self, state: dict, now: datetime) -> list[list[dict]]:
        items = state["items"]
        state.update(self.new_state())
        return [items] if items else []

    def is_empty(self, state: dict) -> bool:
        return not state["items"]
