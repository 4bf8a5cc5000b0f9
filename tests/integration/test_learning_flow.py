"""What users do changes what the flow decides later, run as deployed: the real notification flow
(bytewax) on the real broker learns a user's best hour from their opens on notify.engagement, and
holds a later `send_time: optimal` notification to that hour, which an earlier one, sent before the
history existed, was not. `notifyflow explain` then prints those decisions from notify.status."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from kernel.topics import DEVICES, ENGAGEMENT, EVENTS, PREFERENCES
from notifyflow.processes import FlowProcess

from flow_harness import Outputs, device, preferences, publish, request, statuses, unique


@pytest.fixture
def flow(stack, tmp_path):
    notifications = FlowProcess("notifications", tmp_path / "recovery", tmp_path / "notifications.log",
                                env={"NOTIFYFLOW_HOLDOUT_PERCENT": "0"})
    outputs = Outputs(notifications)
    try:
        notifications.start()
        outputs.settle()
        yield outputs
    finally:
        notifications.stop()
        outputs.close()


def decided(outputs: Outputs, user: str, notification_id: str) -> dict:
    found = outputs.wait_for({user}, lambda mine: any(
        s["notification_id"] == notification_id and s["status"] in ("requested", "deferred") for s in statuses(mine)))
    return next(s for s in statuses(found) if s["notification_id"] == notification_id
                and s["status"] in ("requested", "deferred"))


def explain(notification_id: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "notifyflow.cli", "explain", notification_id], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})


def test_opens_teach_the_best_hour_and_a_later_notification_waits_for_it(flow):
    outputs, user, now = flow, unique("lea"), datetime.now(UTC)
    publish(PREFERENCES, [preferences(user, email=f"{user}@example.com")])
    publish(DEVICES, [device(user, "phone", f"fcm-{user}")])
    outputs.settle()

    # No history yet: a notification asking for the best send time goes now.
    before = request(user, "Weekly recap", category="social", send_time="optimal")
    publish(EVENTS, [before])
    first = decided(outputs, user, before["id"])
    assert (first["status"], first["cohort"], first["send_time"]) == ("requested", "treated", "optimal")

    # The user opened notifications three hours from now (UTC) on each of the last six days.
    hour = (now + timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    publish(ENGAGEMENT, [{"notification_id": f"old-{day}", "user_id": user, "action": "opened", "action_id": None,
                          "device_id": "phone", "channel": "push", "at": hour - timedelta(days=day, minutes=-20),
                          "campaign_id": None, "variant": None, "category": "social", "created_at": None}
                         for day in range(1, 7)])
    outputs.settle()
    outputs.settle()  # engagement and events are different topics: twice, to be past the opens

    after = request(user, "Weekly recap, again", category="social", send_time="optimal")
    publish(EVENTS, [after])
    held = decided(outputs, user, after["id"])
    assert held["status"] == "deferred" and held["cohort"] == "treated"
    assert held["reason"].startswith(f"held for the best send time until {hour.isoformat()} ({hour:%H:%M} UTC is when")

    shown = explain(after["id"])
    assert shown.returncode == 0, shown.stderr
    assert "deferred" in shown.stdout and "held for the best send time" in shown.stdout and "treated" in shown.stdout
    missing = explain(unique("no-such-notification"))
    assert missing.returncode == 2 and "no status of notification" in missing.stderr
    assert "Traceback" not in missing.stderr
