"""A notification flow starting on a backlog reads the users' state before their notifications:
phones registered before a notification was sent are pushed to, even for the first notifications
the flow ever reads (nothing orders two topics otherwise)."""

from __future__ import annotations

from notifyflow.processes import FlowProcess

from flow_harness import Outputs, device, jobs, publish, request, unique

USERS = 300
EARLIER = 30_000  # other users' phones ahead of theirs: more than one fetch of notify.devices


def test_phones_registered_before_the_backlog_are_known_to_its_first_notifications(stack, tmp_path):
    users = [unique("pia") for _ in range(USERS)]
    publish("notify.devices", [device(unique("earlier"), "phone-1", "fcm-earlier") for _ in range(EARLIER)])
    publish("notify.devices", [device(user, "phone-1", f"fcm-{user}") for user in users])
    publish("notify.events", [request(user, "Your order shipped", category="messages") for user in users])
    flow = FlowProcess("notifications", tmp_path / "recovery", tmp_path / "flow.log")
    outputs = Outputs(flow)
    flow.start()  # only now: the whole backlog, devices and notifications, is waiting for it
    try:
        found = outputs.wait_for(set(users), lambda f: len({j["user_id"] for _, j in jobs(f)
                                                             if j["channel"] == "in_app"}) == USERS, timeout_s=120)
    finally:
        flow.stop()
        outputs.close()
    pushed = {job["user_id"] for topic, job in jobs(found) if topic == "notify.outbox.push.normal"}
    assert sorted(set(users) - pushed) == []
