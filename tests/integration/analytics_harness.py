"""The analytics process (flow + dashboard) as a test drives it: started with its own chDB directory,
queried through its SQL endpoint like an analyst, killed and started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from infra.stack import free_port, stop_process, wait_until

SECRET = "test-analytics-secret-0123456789"


class AnalyticsProcess:
    def __init__(self, workdir: Path, snapshot_s: float = 1.0, **env: str) -> None:
        self.workdir, self.snapshot_s, self.process = workdir, snapshot_s, None
        self.log = workdir / "analytics.log"
        self.env = {**os.environ, "CLICKHOUSE_URL": f"chdb://{workdir / 'clickhouse'}", "ANALYTICS_SECRET": SECRET,
                    "NOTIFYFLOW_HOME": str(workdir), **env}
        self.url = ""

    def start(self, snapshot_s: float | None = None) -> AnalyticsProcess:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "notifyflow.cli", "analytics", "--port", str(port),
                 "--recovery", str(self.workdir / "recovery"), "--snapshot", str(snapshot_s or self.snapshot_s)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        wait_until(lambda: httpx.get(f"{self.url}/health", timeout=1).raise_for_status(), "the analytics process",
                   self.process, self.log)
        return self

    def sql(self, query: str) -> list[list]:
        response = httpx.post(f"{self.url}/api/sql", content=query.encode(), timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["rows"]

    def wait_for(self, query: str, expected, timeout_s: float = 60.0) -> None:
        """Until `query` answers `expected`; then once more after a pause, to catch late extras."""
        deadline, found = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            if (found := self.sql(query)) == expected:
                time.sleep(2.5)
                assert self.sql(query) == expected
                return
            if self.process.poll() is not None:
                raise AssertionError(f"analytics process exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.5)
        raise AssertionError(f"{query} answered {found}, not {expected}")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGINT)


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
