"""Escalation if unseen, run as deployed: the notification flow, the in-app, push (local FCM) and
email (local SMTP) delivery flows. An online user's toast that nobody sees becomes a push, then an
email; a toast seen on any device stops the chain; a flow killed between the request and the
delay escalates exactly once; quiet hours defer an escalation; critical alerts are unchanged.

NOTIFYFLOW_ESCALATION_SCALE=0.02 turns the policy's 5 and 30 minutes into 6 and 36 seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from kernel.topics import DEVICES, ENGAGEMENT, EVENTS, PREFERENCES, PRESENCE, outbox_topic
from notifyflow.processes import FlowProcess, delivery_flow
from peers import push_settings
from peers.apns import ApnsService
from peers.fcm import FcmService
from peers.smtp import SmtpServer

from flow_harness import Outputs, device, jobs, preferences, publish, request, statuses, unique

SCALE = "0.02"
PUSH_AFTER_S, EMAIL_AFTER_S = 6, 36


class Flows:
    """The notification flow (restartable from its recovery store) and the delivery flows."""

    def __init__(self, workdir, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.notifications = self.notification_flow()
        self.delivery = [FlowProcess(delivery_flow(channel, "normal"), workdir / channel, workdir / f"{channel}.log",
                                     env=env) for channel in ("in_app", "push", "email")]

    def notification_flow(self) -> FlowProcess:
        return FlowProcess("notifications", self.workdir / "notifications", self.workdir / "notifications.log",
                           env={"NOTIFYFLOW_ESCALATION_SCALE": SCALE})

    def restart_notifications(self) -> None:
        self.notifications.kill()
        self.notifications = self.notification_flow().start()

    def check(self) -> None:
        for flow in (self.notifications, *self.delivery):
            flow.check()


@pytest.fixture(scope="module")
def running(stack, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("escalation")
    with FcmService() as fcm, ApnsService() as apns, SmtpServer() as smtp:
        env = {**push_settings(workdir, fcm, apns), "SMTP_URL": f"smtp://{smtp.host}:{smtp.port}",
               "NOTIFYFLOW_RETRY_DELAYS": "0.5,1"}
        flows = Flows(workdir, env)
        outputs = Outputs()
        try:
            flows.notifications.start()
            outputs.settle()
            for flow in flows.delivery:
                flow.start()
            yield flows, outputs, fcm, smtp
        finally:
            flows.notifications.stop()
            for flow in flows.delivery:
                flow.stop()
            outputs.close()


def online_user(name: str, **prefs) -> str:
    """A user with a phone (FCM) and an address, online in a browser tab right now."""
    user = unique(name)
    publish(PREFERENCES, [preferences(user, email=f"{user}@example.com", **prefs)])
    publish(DEVICES, [device(user, "phone", f"fcm-{user}")])
    publish(PRESENCE, [{"user_id": user, "device_id": "browser", "status": "online", "at": datetime.now(UTC),
                        "gateway_id": "test"}])
    return user


def seen(user: str, notification_id: str, action: str = "seen") -> None:
    publish(ENGAGEMENT, [{"notification_id": notification_id, "user_id": user, "action": action, "action_id": None,
                          "device_id": "laptop", "channel": "in_app", "at": datetime.now(UTC), "campaign_id": None,
                          "variant": None, "category": "messages"}])


def of(found, status: str, channel: str | None = None) -> list[dict]:
    return [s for s in statuses(found) if s["status"] == status and (channel is None or s["channel"] == channel)]


def pushes_to(fcm, user: str) -> list[dict]:
    return [r for r in fcm.received if r["message"]["token"] == f"fcm-{user}"]


def emails_to(smtp, user: str) -> list[dict]:
    return [m for m in smtp.messages if m["rcpt_tos"] == [f"{user}@example.com"]]


def test_an_unseen_toast_becomes_a_push_then_an_email(running):
    flows, outputs, fcm, smtp = running
    user = online_user("una")
    time.sleep(1)  # user state first: nothing orders two topics
    publish(EVENTS, [request(user, "Ana: lunch?", "at noon", category="messages")])
    # The chain's clock starts when the flow routes the toast, so on a loaded machine the toast's delivery
    # may be reported after the push: what is asserted is the flow's own order.
    toast = outputs.wait_for({user}, lambda f: of(f, "requested", "in_app"), timeout_s=60)
    assert not of(toast, "requested", "push") and not of(toast, "requested", "email")  # the toast only, at first
    outputs.wait_for({user}, lambda f: of(f, "delivered", "in_app"), timeout_s=60)
    found = outputs.wait_for({user}, lambda f: of(f, "sent", "push"), timeout_s=PUSH_AFTER_S + 60)
    [escalated] = of(found, "escalated", "push")
    assert escalated["reason"] == f"not seen within {PUSH_AFTER_S} s: trying push"
    assert escalated["at"] - of(toast, "requested", "in_app")[0]["at"] >= timedelta(seconds=PUSH_AFTER_S - 1)
    [push] = pushes_to(fcm, user)
    assert push["message"]["notification"] == {"title": "Ana: lunch?", "body": "at noon"}
    found = outputs.wait_for({user}, lambda f: of(f, "sent", "email"), timeout_s=EMAIL_AFTER_S + 60)
    assert len(of(found, "escalated", "email")) == 1
    [mail] = emails_to(smtp, user)
    assert mail["message"]["Subject"] == "Ana: lunch?"
    assert len(pushes_to(fcm, user)) == 1


@pytest.mark.parametrize("action", ["seen", "read"])
def test_a_toast_seen_on_any_device_stops_the_chain(running, action):
    flows, outputs, fcm, smtp = running
    user = online_user("sam")
    time.sleep(1)
    publish(EVENTS, [request(user, "Build #7 passed", category="ci")])
    toast = outputs.wait_for({user}, lambda f: of(f, "delivered", "in_app"), timeout_s=60)
    seen(user, of(toast, "delivered", "in_app")[0]["notification_id"], action)
    time.sleep(PUSH_AFTER_S * 2 + 4)
    flows.check()
    later = outputs.wait_for({user}, lambda f: True)
    assert not of(later, "escalated") and not pushes_to(fcm, user) and not emails_to(smtp, user)


def test_an_escalation_in_quiet_hours_waits_for_them_to_end(running):
    flows, outputs, fcm, smtp = running
    # The quiet window below ends at the next minute: after the push is due (6 s on), before the email (36 s).
    while not 25 <= datetime.now(UTC).second <= 45:
        time.sleep(0.5)
    user = online_user("quinn")
    time.sleep(1)
    publish(EVENTS, [request(user, "Standup moved", category="messages")])
    outputs.wait_for({user}, lambda f: of(f, "delivered", "in_app"), timeout_s=60)
    now = datetime.now(UTC)
    start, end = now.strftime("%H:%M"), (now + timedelta(minutes=1)).strftime("%H:%M")
    publish(PREFERENCES, [preferences(user, email=f"{user}@example.com",
                                      quiet_hours={"start_time": start, "end_time": end, "timezone": "UTC",
                                                   "days": []})])
    window_end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    deferred = outputs.wait_for({user}, lambda f: of(f, "deferred"), timeout_s=PUSH_AFTER_S + 60)
    assert of(deferred, "escalated", "push") and not pushes_to(fcm, user)
    found = outputs.wait_for({user}, lambda f: of(f, "sent", "push"), timeout_s=120)
    assert of(found, "sent", "push")[0]["at"] >= window_end
    assert len(pushes_to(fcm, user)) == 1


def test_critical_alerts_go_everywhere_at_once_and_do_not_escalate(running):
    flows, outputs, fcm, smtp = running
    user = online_user("cat")
    time.sleep(1)
    publish(EVENTS, [request(user, "New sign-in", "Was this you?", category="security", priority="critical")])
    found = outputs.wait_for({user}, lambda f: len(of(f, "requested")) == 3, timeout_s=60)
    assert sorted((topic, job["fallback"]) for topic, job in jobs(found)) == [
        (outbox_topic(channel, "critical"), []) for channel in ("email", "in_app", "push")]
    time.sleep(PUSH_AFTER_S + 4)
    assert not of(outputs.wait_for({user}, lambda f: True), "escalated")


def test_a_flow_killed_between_the_request_and_the_delay_escalates_exactly_once(running):
    flows, outputs, fcm, smtp = running
    user = online_user("kim")
    time.sleep(1)
    publish(EVENTS, [request(user, "Review requested", category="messages")])
    outputs.wait_for({user}, lambda f: of(f, "delivered", "in_app"), timeout_s=60)
    time.sleep(2.5)  # a snapshot holds the timer
    flows.restart_notifications()
    outputs.wait_for({user}, lambda f: of(f, "sent", "push"), timeout_s=PUSH_AFTER_S + 90)
    time.sleep(3)  # anything replayed after the restart has arrived by now
    assert len(pushes_to(fcm, user)) == 1 and not emails_to(smtp, user)
