"""Push end to end, run as deployed: the notification flow and the push delivery flow, with an
iPhone (APNs), an Android phone (FCM) and a browser (Web Push) — each device reached once, a
dead browser subscription forgotten, nothing sent twice after the delivery flow is killed and
replays its whole input, and each platform told the default sound and vibration (a user's own
choice: tests/integration/test_preference_effects.py)."""

from __future__ import annotations

import json

import pytest

from kernel.requests import device_record
from notifyflow.processes import FlowProcess, delivery_flow
from peers import push_settings
from peers.apns import ApnsService
from peers.fcm import FcmService
from peers.webpush import WebPushService

from flow_harness import delivering, device, preferences, publish, request, statuses, unique


@pytest.fixture
def peers(tmp_path):
    with ApnsService() as apns, FcmService() as fcm, WebPushService() as webpush:
        yield apns, fcm, webpush, {**push_settings(tmp_path, fcm, apns), "NOTIFYFLOW_RETRY_DELAYS": "0.5,1"}


def test_one_request_reaches_every_platform_once(stack, peers, tmp_path):
    apns, fcm, webpush, env = peers
    user = unique("zoe")
    browser, dead_browser = webpush.subscribe(), webpush.subscribe()
    webpush.unsubscribe(dead_browser["id"])
    iphone_token = "ab" * 32
    web = {key: browser[key] for key in ("endpoint", "p256dh", "auth")}
    dead = {key: dead_browser[key] for key in ("endpoint", "p256dh", "auth")}
    publish("notify.devices", [device(user, "iphone", iphone_token, platform="ios"),
                               device(user, "pixel", "fcm-token-zoe"),
                               device_record(user, "laptop", "web", web_push=web),
                               device_record(user, "old-laptop", "web", web_push=dead)])
    publish("notify.preferences", [preferences(user, email=f"{user}@example.com")])
    with delivering(tmp_path, env, ("push", "high")) as outputs:
        publish("notify.events", [request(user, "Build #42 failed", "3 tests failed on main", category="ci",
                                          priority="high", metadata={"deep_link": "https://ci.example.com/42"})])
        found = outputs.wait_for({user}, lambda f: len(delivered(f)) >= 4, timeout_s=90)
        outputs.flows[1].kill()  # the push flow
        # A fresh recovery store: the push flow reads its lane again from the beginning.
        with FlowProcess(delivery_flow("push", "high"), tmp_path / "replay", tmp_path / "replay.log", env=env):
            replayed = outputs.wait_for({user}, lambda f: len([s for s in statuses(f)
                                                              if s["status"] == "deduplicated"]) >= 3, timeout_s=90)
    by_device = {s["device_id"]: (s["status"], s["provider"]) for s in delivered(found)}
    assert by_device == {"iphone": ("sent", "apns"), "pixel": ("sent", "fcm"), "laptop": ("sent", "webpush"),
                         "old-laptop": ("token_invalid", "webpush")}
    [to_iphone] = apns.received
    assert to_iphone["payload"]["aps"]["alert"] == {"title": "Build #42 failed", "body": "3 tests failed on main"}
    [to_pixel] = fcm.received
    assert to_pixel["message"]["notification"] == {"title": "Build #42 failed", "body": "3 tests failed on main"}
    [to_laptop] = webpush.received
    assert json.loads(to_laptop["payload"])["data"]["url"] == "https://ci.example.com/42"
    # Zoe never chose how pushes present themselves: the defaults, sound and vibration on.
    assert alerting(to_iphone, to_pixel, to_laptop) == ("default", (True, True), {"vibrate": [200, 100, 200]})
    # The replay found every reached device already claimed and sent nothing again.
    assert sorted(s["device_id"] for s in statuses(replayed) if s["status"] == "deduplicated") == [
        "iphone", "laptop", "pixel"]
    assert (len(apns.received), len(fcm.received), len(webpush.received)) == (1, 1, 1)


def delivered(outputs) -> list[dict]:
    """The push delivery flow's statuses (the notification flow's `requested` has no device)."""
    return [s for s in statuses(outputs) if s["channel"] == "push" and s["device_id"]]


def alerting(to_iphone: dict, to_pixel: dict, to_laptop: dict) -> tuple:
    """What each platform was told about sound and vibration: APNs sound, FCM's default sound and
    vibration, the Web Push notification's silent and vibrate."""
    shown = json.loads(to_laptop["payload"])
    android = to_pixel["message"]["android"]["notification"]
    return (to_iphone["payload"]["aps"].get("sound"), (android["default_sound"], android["default_vibrate_timings"]),
            {key: shown[key] for key in ("silent", "vibrate") if key in shown})
