"""The seed's preference fields take effect, run as deployed (the notification flow and the in-app,
email and push delivery flows, with the local SMTP, FCM, APNs and Web Push peers): email set to
hourly batches into one email digest while the toasts go out at once; sound and vibration turned
off reach every push platform; an opt-out made while a notification waits out quiet hours wins."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from kernel.requests import device_record
from kernel.topics import DEVICES, EVENTS, PREFERENCES
from peers import push_settings
from peers.apns import ApnsService
from peers.fcm import FcmService
from peers.smtp import SmtpServer
from peers.webpush import WebPushService

from flow_harness import delivering, device, preferences, publish, request, statuses, unique


@pytest.fixture(scope="module")
def running(stack, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("preference-effects")
    with SmtpServer() as smtp, FcmService() as fcm, ApnsService() as apns, WebPushService() as webpush:
        env = {**push_settings(workdir, fcm, apns), "SMTP_URL": f"smtp://{smtp.host}:{smtp.port}"}
        with delivering(workdir, env, ("in_app", "normal"), ("email", "bulk"), ("push", "high")) as outputs:
            yield outputs, smtp, (apns, fcm, webpush)


def of(found, status: str, channel: str | None = None) -> list[dict]:
    return [s for s in statuses(found) if s["status"] == status and (channel is None or s["channel"] == channel)]


def minute_ahead(at_least_s: float) -> datetime:
    """The first minute boundary at least `at_least_s` from now."""
    return (datetime.now(UTC) + timedelta(seconds=at_least_s + 60)).replace(second=0, microsecond=0)


def test_hourly_email_batches_into_one_digest_while_the_toasts_go_at_once(running):
    outputs, smtp, _ = running
    user, boundary = unique("hana"), minute_ahead(25)
    # Hourly email digests go out at the minute of the user's digest time: here, the boundary's.
    publish(PREFERENCES, [preferences(user, email=f"{user}@example.com", timezone="UTC",
                                      digest={"enabled": False, "frequency": "daily",
                                              "time": f"00:{boundary.minute:02d}", "timezone": "UTC"},
                                      channels={"email": {"enabled": True, "categories": [], "frequency": "hourly",
                                                          "emergency_only": False}})])
    time.sleep(1)
    publish(EVENTS, [request(user, f"Build #{n} passed", "main is green", category="ci", channels=["in_app", "email"])
                     for n in range(3)])
    found = outputs.wait_for({user}, lambda f: len(of(f, "delivered", "in_app")) == 3, timeout_s=60)
    assert len(of(found, "digested", "email")) == 3 and not of(found, "sent", "email")
    assert of(found, "digested", "email")[0]["reason"] == "hourly email digest"
    found = outputs.wait_for({user}, lambda f: of(f, "sent", "email"), timeout_s=150)
    assert of(found, "sent", "email")[0]["at"] >= boundary
    [mail] = [m for m in smtp.messages if m["rcpt_tos"] == [f"{user}@example.com"]]
    assert mail["message"]["Subject"] == "3 notifications you may have missed"
    body = mail["message"].get_body(("plain",)).get_content()
    assert all(f"Build #{n} passed" in body for n in range(3))


def test_sound_and_vibration_turned_off_reach_every_push_platform(running):
    outputs, _, (apns, fcm, webpush) = running
    user, browser = unique("yan"), webpush.subscribe()
    publish(DEVICES, [device(user, "iphone", f"{user.encode().hex()[:16]:0<64}", platform="ios"),
                      device(user, "pixel", f"fcm-{user}"),
                      device_record(user, "laptop", "web",
                                    web_push={key: browser[key] for key in ("endpoint", "p256dh", "auth")})])
    publish(PREFERENCES, [preferences(user, presentation={"sound": False, "vibration": False})])
    time.sleep(1)
    publish(EVENTS, [request(user, "Deploy finished", "v42 is live", category="ci", priority="high")])
    found = outputs.wait_for({user}, lambda f: len([s for s in of(f, "sent", "push") if s["device_id"]]) >= 3,
                             timeout_s=90)
    assert sorted(s["device_id"] for s in of(found, "sent", "push")) == ["iphone", "laptop", "pixel"]
    [to_iphone] = [r for r in apns.received if r["payload"]["aps"]["alert"]["title"] == "Deploy finished"
                   and r["token"].startswith(user.encode().hex()[:16])]
    [to_pixel] = [r for r in fcm.received if r["message"]["token"] == f"fcm-{user}"]
    [to_laptop] = [r for r in webpush.received if r["subscription"] == browser["id"]]
    # No sound on the iPhone even for a high-priority push, none asked of Android, a silent browser notification.
    android = to_pixel["message"]["android"]["notification"]
    shown = json.loads(to_laptop["payload"])
    assert to_iphone["payload"]["aps"].get("sound") is None
    assert (android["default_sound"], android["default_vibrate_timings"]) == (False, False)
    assert shown.get("silent") is True and "vibrate" not in shown


def test_an_opt_out_made_during_quiet_hours_stops_the_held_notification(running):
    outputs, _, _ = running
    user, end = unique("olga"), minute_ahead(20)
    quiet = {"start_time": datetime.now(UTC).strftime("%H:%M"), "end_time": end.strftime("%H:%M"),
             "timezone": "UTC", "days": []}
    publish(PREFERENCES, [preferences(user, quiet_hours=quiet)])
    time.sleep(1)
    publish(EVENTS, [request(user, "Someone liked your post", category="social")])
    found = outputs.wait_for({user}, lambda f: of(f, "deferred"), timeout_s=60)
    assert of(found, "deferred")[0]["reason"] == f"held until {end.isoformat()}"
    publish(PREFERENCES, [preferences(user, quiet_hours=quiet, categories={
        "social": {"enabled": False, "channels": [], "priority_override": None}})])
    found = outputs.wait_for({user}, lambda f: of(f, "dropped"), timeout_s=150)
    [dropped] = of(found, "dropped")
    assert dropped["reason"] == "category social is turned off" and dropped["at"] >= end
    assert not of(found, "delivered") and not of(found, "requested")
