"""The notification flow is killed (SIGKILL) and resumed from its recovery store: per-user state,
timers and input offsets all come back, and nothing already handled is handled again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from notifyflow.processes import FlowProcess

from flow_harness import Outputs, jobs, preferences, publish, request, statuses, unique

SNAPSHOT_S = 1


def test_state_timers_and_offsets_survive_a_crash(stack, tmp_path):
    flow = FlowProcess("notifications", tmp_path / "recovery", tmp_path / "flow.log", snapshot_s=SNAPSHOT_S)
    outputs = Outputs(flow)
    user, muted = unique("ned"), unique("ola")
    flow.start()
    try:
        publish("notify.preferences", [preferences(muted, enabled=False)])
        remind_at = datetime.now(UTC) + timedelta(seconds=25)  # still ahead when a loaded flow reads it
        publish("notify.events", [request(user, "Build failed", "main is red", category="ci"),
                                  request(user, "Standup", "in 5 minutes", scheduled_at=remind_at)])
        before = outputs.wait_for({user}, lambda f: len(jobs(f)) >= 1 and len(statuses(f)) >= 2)
        assert [s["status"] for s in statuses(before)] == ["requested", "deferred"]
        time.sleep(3 * SNAPSHOT_S + 1)  # let a snapshot record state and offsets
        flow.kill()

        flow.start()
        publish("notify.events", [request(user, "Build failed", "main is red again", category="ci"),
                                  request(user, "Build failed", "main is red", category="ci"),
                                  request(muted, "Weekly tips")])
        after = outputs.wait_for({user, muted}, lambda f: len(jobs(f)) >= 4 and any(
            s["user_id"] == muted for s in statuses(f)), timeout_s=60)
    finally:
        flow.stop()
        outputs.close()

    sent = [job for _, job in jobs(after) if job["user_id"] == user]
    # The dedup window was restored: the repeat merges into the notification sent before the crash.
    first, fresh, merged = (next(job for job in sent if job["body"] == body and job["revision"] == revision)
                            for body, revision in (("main is red", 0), ("main is red again", 0), ("main is red", 1)))
    assert (first["revision"], first["body"]) == (0, "main is red")
    assert (fresh["revision"], fresh["body"]) == (0, "main is red again")
    assert (merged["notification_id"], merged["revision"], merged["kind"]) == (first["notification_id"], 1, "update")
    assert merged["merge"]["count"] == 2
    # Offsets were restored: nothing handled before the crash was handled again.
    assert len([job for job in sent if job["job_id"] == first["job_id"]]) == 1
    # The held notification's timer was restored and fired after the restart.
    assert [j["title"] for _, j in jobs(after)].count("Standup") == 1
    # The muted user's preferences came back from the snapshot, not from re-reading the topic.
    assert [s["reason"] for s in statuses(after) if s["user_id"] == muted] == ["notifications are turned off"]
