"""The analytics process (flow + dashboard) as a test drives it: started with its own chDB directory,
queried through its SQL endpoint like an analyst, killed and started again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.pseudonym import UserKeys
from analytics.rows import Rows
from kernel.topics import codec_for
from notifyflow.processes import AnalyticsProcess

SECRET = "test-analytics-secret-0123456789"


def analytics_process(workdir: Path, snapshot_s: float = 1.0, **env: str) -> AnalyticsProcess:
    """An analytics process with its own chDB directory and pseudonym secret."""
    return AnalyticsProcess(workdir / "recovery", workdir / "analytics.log", snapshot_s=snapshot_s, env={
        "CLICKHOUSE_URL": f"chdb://{workdir / 'clickhouse'}", "ANALYTICS_SECRET": SECRET,
        "NOTIFYFLOW_HOME": str(workdir), **env})


def wait_for(analytics: AnalyticsProcess, query: str, expected, timeout_s: float = 60.0) -> None:
    """Until `query` answers `expected`; then once more after a pause, to catch late extras."""
    deadline, found = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if (found := analytics.sql(query)) == expected:
            time.sleep(2.5)
            assert analytics.sql(query) == expected
            return
        analytics.check()
        time.sleep(0.5)
    raise AssertionError(f"{query} answered {found}, not {expected}")


def status(run: str, n: int, state: str, *, channel: str = "push", campaign: str | None = None,
           variant: str | None = None, latency_ms: int = 40, at: datetime | None = None, **fields) -> dict:
    at = at or datetime.now(UTC)
    return {"notification_id": f"{run}-{n}", "user_id": f"{run}-user-{n % 50}", "channel": channel,
            "device_id": f"device-{n}", "status": state, "attempt": 1, "provider": "fcm", "reason": None,
            "category": "marketing" if campaign else "messages", "campaign_id": campaign, "variant": variant,
            "platform": "android", "created_at": at - timedelta(milliseconds=latency_ms), "at": at,
            "tenant": "acme", **fields}


def engagement(run: str, n: int, action: str, *, campaign: str | None = None, variant: str | None = None,
               action_id: str | None = None, at: datetime | None = None) -> dict:
    return {"notification_id": f"{run}-{n}", "user_id": f"{run}-user-{n % 50}", "action": action,
            "action_id": action_id, "device_id": f"device-{n}", "channel": "push", "at": at or datetime.now(UTC),
            "campaign_id": campaign, "variant": variant, "category": "marketing" if campaign else "messages"}


class Consumed:
    """Records encoded by the real codecs and turned into rows as the analytics flow does, for a
    writer (analytics.store.RawEvents) to store: `items`, in the order they were added."""

    def __init__(self, keys: UserKeys) -> None:
        self.rows, self.items, self.offset = Rows(keys), [], 0

    def add(self, topic: str, record: dict) -> None:
        self.offset += 1
        self.items.append(self.rows.item(topic, 0, self.offset, record["user_id"].encode(),
                                         codec_for(topic).encode(record), datetime.now(UTC)))
