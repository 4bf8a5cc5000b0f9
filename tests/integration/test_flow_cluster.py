"""The notification flow scaled out over two bytewax processes: each user's requests are handled
once, by one process, in order."""

from __future__ import annotations

from notifyflow.processes import FlowProcess

from flow_harness import Outputs, jobs, publish, request, statuses, unique


def test_two_processes_share_the_users_without_duplicates(stack, tmp_path):
    flow = FlowProcess("notifications", tmp_path / "recovery", tmp_path / "flow.log", processes=2)
    outputs = Outputs(flow)
    users = [unique("pam") for _ in range(8)]
    sent = {user: [request(user, f"Message {n}", category="messages") for n in range(5)] for user in users}
    try:
        flow.start()
        publish("notify.events", [r for user in users for r in sent[user]])
        # Both: a status and its job are written together but read from different topics, so one may
        # be in while the other is not yet (the full suite once read all 40 statuses before a user's jobs).
        found = outputs.wait_for(set(users), lambda f: len(statuses(f)) >= 40 and len(jobs(f)) >= 40, timeout_s=90)
    finally:
        flow.stop()
        outputs.close()
    assert len(flow.running_processes) == 2
    for user in users:
        assert [s["notification_id"] for s in statuses(found) if s["user_id"] == user] == [
            r["id"] for r in sent[user]]
        assert [j["title"] for _, j in jobs(found) if j["user_id"] == user] == [f"Message {n}" for n in range(5)]
