"""The FCM and Web Push providers through the delivery engine, against the local FCM HTTP v1 and
Web Push peers, with real claims in Redis: exact messages as the services receive (and browsers
decrypt) them, retries that honour Retry-After, dead tokens forgotten, and replays sending nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import firebase_admin
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connectors import redis
from kernel.topics import codec_for, outbox_topic
from peers.fcm import FcmService, fcm_app
from peers.webpush import WebPushService
from sinks.circuit import Breakers
from sinks.claims import RedisClaims
from sinks.engine import Delivery
from sinks.fcm import FcmProvider
from sinks.retry import RetryPolicy
from sinks.webpush import WebPushProvider, load_vapid_key, topic

NOW = datetime.now(UTC).replace(microsecond=0)
SUBJECT = "mailto:alerts@notifyflow.example"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def job(user: str, devices: list[dict], lane: str = "normal", **fields) -> dict:
    """A complete push DeliveryJob, through the codec as the flow would read it."""
    notification_id = unique("n")
    codec = codec_for(outbox_topic("push", lane))
    return codec.decode(codec.encode({
        "job_id": f"{notification_id}:{user}:push:0", "notification_id": notification_id, "revision": 0,
        "request_ids": [notification_id], "user_id": user, "tenant": "default", "channel": "push", "lane": lane,
        "kind": "single", "priority": "normal", "type": "info", "category": "ci", "title": "Build #42 failed",
        "body": "3 tests failed on main", "html_body": "3 tests failed on main", "locale": "en",
        "collapse_key": f"build-42-{user}", "created_at": NOW, "devices": devices, **fields}))


def phone(device_id: str, platform: str = "android") -> dict:
    return {"device_id": device_id, "platform": platform, "token": unique(f"fcm-{device_id}"), "web_push": None}


def browser(device_id: str, subscription: dict) -> dict:
    return {"device_id": device_id, "platform": "web", "token": None,
            "web_push": {key: subscription[key] for key in ("endpoint", "p256dh", "auth")}}


def engine(stack, provider) -> Delivery:
    return Delivery(provider, RedisClaims(redis.client(stack.urls["REDIS_URL"])), Breakers(),
                    RetryPolicy(delays=(0.1, 0.2)))


def outcomes(records: list) -> list[tuple]:
    """(topic, status, device, attempt, reason) for statuses; (topic, key) for anything else."""
    return [(t, v["status"], v["device_id"], v["attempt"], v["reason"]) if t == "notify.status" else (t, k)
            for t, k, v in records]


def tombstone(sent: dict, device: dict) -> tuple:
    return ("notify.devices", sent["user_id"].encode(), {
        "user_id": sent["user_id"], "device_id": device["device_id"], "platform": device["platform"],
        "token": device["token"], "web_push": device["web_push"], "app_version": None, "registered_at": NOW,
        "active": False, "tenant": sent["tenant"]})


@pytest.fixture
def fcm():
    with FcmService() as service:
        yield service


@pytest.fixture
def push_service():
    with WebPushService() as service:
        yield service


@pytest.fixture
def vapid_pem() -> str:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


# -- FCM ------------------------------------------------------------------------------------------

def test_fcm_delivers_the_exact_message_to_each_device_once(stack, fcm):
    user = unique("ana")
    android, desktop = phone("phone"), phone("laptop", "desktop")
    iphone = {"device_id": "iphone", "platform": "ios", "token": "apns-token", "web_push": None}
    sent = job(user, [android, desktop, iphone], priority="critical", deep_link="app://builds/42",
               image_url="https://ci.example.com/42.png", payload={"build": "42"},
               actions=[{"id": "view", "title": "View", "action": "open", "icon": None}],
               expires_at=NOW + timedelta(hours=1))
    delivery = engine(stack, FcmProvider(fcm_app(fcm), clock=lambda: NOW))
    state = delivery.new_state()

    records = delivery.process(state, [sent], NOW)

    assert outcomes(records) == [("notify.status", "sent", "phone", 1, None),
                                 ("notify.status", "sent", "laptop", 1, None)]
    assert all(v["provider"] == "fcm" and v["platform"] in ("android", "desktop") for _, _, v in records)
    received = {m["message"]["token"]: m["message"] for m in fcm.wait_for(2)}
    assert set(received) == {android["token"], desktop["token"]}  # iOS goes through APNs
    assert received[android["token"]] == {
        "token": android["token"],
        "notification": {"title": "Build #42 failed", "body": "3 tests failed on main",
                         "image": "https://ci.example.com/42.png"},
        "data": {"build": "42", "notification_id": sent["notification_id"], "category": "ci",
                 "deep_link": "app://builds/42", "actions": '[{"id":"view","title":"View","action":"open"}]'},
        "android": {"collapse_key": f"build-42-{user}", "priority": "high", "ttl": "3600s",
                    "notification": {"tag": f"build-42-{user}", "click_action": "app://builds/42",
                                     "default_sound": True, "default_vibrate_timings": True}},
    }
    assert received[desktop["token"]] == {**received[android["token"]], "token": desktop["token"]}

    # A replay after a crash: the claims say both devices have it, and FCM hears nothing more.
    replayed = delivery.process(delivery.new_state(), [sent], NOW)
    assert outcomes(replayed) == [("notify.status", "deduplicated", "phone", 1, "already claimed"),
                                  ("notify.status", "deduplicated", "laptop", 1, "already claimed")]
    assert len(fcm.received) == 2 and fcm.rejected == []


def test_fcm_tells_each_device_the_sound_and_vibration_its_user_chose(stack, fcm):
    user, muted_phone, default_phone = unique("ko"), phone("muted"), phone("default")
    muted = job(user, [muted_phone], priority="high", presentation={"sound": False, "vibration": False})
    defaults = job(user, [default_phone], priority="high")  # a user who never chose: no presentation
    delivery = engine(stack, FcmProvider(fcm_app(fcm), clock=lambda: NOW))

    records = delivery.process(delivery.new_state(), [muted, defaults], NOW)

    assert outcomes(records) == [("notify.status", "sent", "muted", 1, None),
                                 ("notify.status", "sent", "default", 1, None)]
    shown = {m["message"]["token"]: m["message"]["android"]["notification"] for m in fcm.wait_for(2)}
    assert shown[muted_phone["token"]] == {"tag": muted["collapse_key"], "default_sound": False,
                                           "default_vibrate_timings": False}
    assert shown[default_phone["token"]] == {"tag": defaults["collapse_key"], "default_sound": True,
                                             "default_vibrate_timings": True}


def test_fcm_unregistered_token_is_forgotten_and_only_a_wholly_failed_job_falls_back(stack, fcm):
    user, gone, alive = unique("bo"), phone("old-phone"), phone("new-phone")
    fcm.unregister(gone["token"])
    chain = [{"channel": "email", "after_seconds": 0, "address": "bo@example.com"}]
    sent = job(user, [gone, alive], fallback=chain)
    delivery = engine(stack, FcmProvider(fcm_app(fcm), clock=lambda: NOW))
    state = delivery.new_state()

    records = delivery.process(state, [sent], NOW)

    reason = "UnregisteredError: Requested entity was not found."
    # The other phone got it: no fallback to email.
    assert outcomes(records) == [("notify.status", "token_invalid", "old-phone", 1, reason),
                                 ("notify.devices", user.encode()),
                                 ("notify.status", "sent", "new-phone", 1, None)]
    assert records[1] == tombstone(sent, gone)  # the notification flow stops targeting the dead token
    assert [m["message"]["token"] for m in fcm.received] == [alive["token"]]
    assert [(r["target"], r["status"]) for r in fcm.rejected] == [(gone["token"], 404)]
    assert delivery.is_empty(state)

    only_dead = job(user, [gone], fallback=chain)
    records = delivery.process(state, [only_dead], NOW)
    assert [r[0] for r in records] == ["notify.status", "notify.devices", "notify.outbox.email.normal"]
    assert records[2][2]["channel"] == "email" and records[2][2]["address"] == "bo@example.com"


def test_fcm_unavailable_is_retried_then_sent(stack, fcm):
    user, device = unique("cy"), phone("phone")
    fcm.fail(device["token"], 503, times=1)
    sent = job(user, [device])
    delivery = engine(stack, FcmProvider(fcm_app(fcm), clock=lambda: NOW))
    state = delivery.new_state()

    first = delivery.process(state, [sent], NOW)
    assert outcomes(first) == [("notify.status", "retried", "phone", 1,
                                "UnavailableError: The service is currently unavailable.")]
    assert fcm.received == [] and not delivery.is_empty(state)

    assert NOW < delivery.due(state) <= NOW + timedelta(seconds=0.12)  # the policy's first delay, with jitter
    assert outcomes(delivery.release(state, NOW + timedelta(seconds=0.2))) == [
        ("notify.status", "sent", "phone", 2, None)]
    assert [m["message"]["token"] for m in fcm.received] == [device["token"]]
    assert [r["status"] for r in fcm.rejected] == [503]
    assert delivery.is_empty(state)


def test_fcm_quota_waits_for_retry_after_and_a_bad_message_is_dead_lettered(stack, fcm):
    user, throttled, refused = unique("di"), phone("throttled"), phone("refused")
    fcm.fail(throttled["token"], 429, times=1, retry_after=3)
    fcm.fail(refused["token"], 400)
    sent = job(user, [throttled, refused])
    delivery = engine(stack, FcmProvider(fcm_app(fcm), clock=lambda: NOW))
    state = delivery.new_state()

    records = delivery.process(state, [sent], NOW)

    assert outcomes(records) == [
        ("notify.status", "retried", "throttled", 1,
         "QuotaExceededError: Quota exceeded for quota metric 'Sent messages'."),
        ("notify.status", "failed", "refused", 1, "InvalidArgumentError: Request contains an invalid argument."),
        ("notify.dlq", user.encode())]
    assert records[2][2]["stage"] == "deliver_push" and records[2][2]["original"] == codec_for(
        outbox_topic("push", "normal")).encode(sent)
    assert delivery.due(state) == NOW + timedelta(seconds=3)  # Retry-After outlasts the policy's 0.1 s
    assert delivery.release(state, NOW + timedelta(seconds=2)) == []
    assert outcomes(delivery.release(state, NOW + timedelta(seconds=3))) == [
        ("notify.status", "sent", "throttled", 2, None)]
    assert [m["message"]["token"] for m in fcm.received] == [throttled["token"]]


def test_fcm_from_env_uses_the_service_account_credential_path(stack, fcm, tmp_path):
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(fcm.service_account()))
    environ = {"GOOGLE_APPLICATION_CREDENTIALS": str(key_file), "FCM_PROJECT_ID": fcm.project_id,
               "FCM_ENDPOINT": fcm.url}
    provider = FcmProvider.from_env(environ)
    try:
        assert FcmProvider.from_env(environ).app is provider.app  # one App per configuration
        user, device = unique("jo"), phone("phone")
        delivery = engine(stack, provider)
        records = delivery.process(delivery.new_state(), [job(user, [device])], NOW)
    finally:
        firebase_admin.delete_app(provider.app)
    assert outcomes(records) == [("notify.status", "sent", "phone", 1, None)]
    [received] = fcm.wait_for(1)
    # JWT bearer grant against the key file's token_uri, then the access token as Bearer
    assert received["message"]["token"] == device["token"] and received["bearer"].startswith("ya29.local-")


# -- Web Push -------------------------------------------------------------------------------------

def decrypted(message: dict) -> dict:
    return json.loads(message["payload"])


def test_web_push_delivers_the_exact_payload_the_browser_decrypts_once(stack, push_service, vapid_pem):
    provider = WebPushProvider.from_env({"VAPID_PRIVATE_KEY": vapid_pem, "VAPID_SUBJECT": SUBJECT})
    provider.clock = lambda: NOW
    # Subscribed with our application server key: the service refuses pushes signed with any other.
    laptop = push_service.subscribe(application_server_key=provider.application_server_key)
    user, device = unique("ed"), browser("laptop", laptop)
    sent = job(user, [device, phone("phone")], priority="high", revision=1, deep_link="https://ci.example.com/42",
               icon="https://ci.example.com/icon.png", badge="https://ci.example.com/badge.png",
               actions=[{"id": "view", "title": "View", "action": "open", "icon": None},
                        {"id": "retry", "title": "Re-run", "action": "retry", "icon": None},
                        {"id": "mute", "title": "Mute", "action": "mute", "icon": None}],
               expires_at=NOW + timedelta(minutes=30))
    delivery = engine(stack, provider)

    records = delivery.process(delivery.new_state(), [sent], NOW)

    assert outcomes(records) == [("notify.status", "sent", "laptop", 1, None)]
    assert records[0][2]["provider"] == "webpush" and records[0][2]["platform"] == "web"
    [message] = push_service.wait_for(1)
    assert decrypted(message) == {
        "title": "Build #42 failed", "body": "3 tests failed on main", "icon": "https://ci.example.com/icon.png",
        "badge": "https://ci.example.com/badge.png", "tag": f"build-42-{user}",
        "data": {"notification_id": sent["notification_id"], "url": "https://ci.example.com/42", "category": "ci"},
        "actions": [{"action": "view", "title": "View"}, {"action": "retry", "title": "Re-run"}],
        "renotify": True, "requireInteraction": False, "vibrate": [200, 100, 200]}
    assert {k: v for k, v in message.items() if k != "payload"} == {
        "subscription": laptop["id"], "ttl": 1800, "urgency": "high", "topic": topic(f"build-42-{user}"),
        "vapid_sub": SUBJECT}

    replayed = delivery.process(delivery.new_state(), [sent], NOW)
    assert outcomes(replayed) == [("notify.status", "deduplicated", "laptop", 1, "already claimed")]
    assert len(push_service.received) == 1 and push_service.rejected == []


def test_web_push_gone_subscription_is_forgotten(stack, push_service, vapid_pem):
    subscription = push_service.subscribe()
    push_service.unsubscribe(subscription["id"])
    user, device = unique("fi"), browser("old-browser", subscription)
    sent = job(user, [device])
    delivery = engine(stack, WebPushProvider(load_vapid_key(vapid_pem), clock=lambda: NOW))
    state = delivery.new_state()

    records = delivery.process(state, [sent], NOW)

    assert outcomes(records) == [("notify.status", "token_invalid", "old-browser", 1, "HTTP 410 from push service"),
                                 ("notify.devices", user.encode())]
    assert records[1] == tombstone(sent, device)
    assert push_service.received == [] and [r["status"] for r in push_service.rejected] == [410]
    assert delivery.is_empty(state)


def test_web_push_throttled_waits_for_retry_after_then_sends(stack, push_service, vapid_pem):
    subscription = push_service.subscribe()
    push_service.fail(subscription["id"], 429, times=1, retry_after=2)
    user, device = unique("gu"), browser("browser", subscription)
    sent = job(user, [device], lane="bulk")
    delivery = engine(stack, WebPushProvider(load_vapid_key(vapid_pem), SUBJECT, clock=lambda: NOW))
    state = delivery.new_state()

    first = delivery.process(state, [sent], NOW)
    assert outcomes(first) == [("notify.status", "retried", "browser", 1, "HTTP 429 from push service")]
    assert delivery.due(state) == NOW + timedelta(seconds=2)

    assert outcomes(delivery.release(state, NOW + timedelta(seconds=2))) == [
        ("notify.status", "sent", "browser", 2, None)]
    [message] = push_service.wait_for(1)
    assert decrypted(message)["data"]["notification_id"] == sent["notification_id"]
    assert (message["urgency"], message["ttl"]) == ("low", 86400)  # bulk lane, no expiry
    assert [r["status"] for r in push_service.rejected] == [429]
    # The retried send still holds its claim: a replay now sends nothing.
    assert outcomes(delivery.process(delivery.new_state(), [sent], NOW)) == [
        ("notify.status", "deduplicated", "browser", 1, "already claimed")]
    assert len(push_service.received) == 1


def test_web_push_signed_with_the_wrong_key_fails_and_is_dead_lettered(stack, push_service, vapid_pem):
    other = WebPushProvider(load_vapid_key(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()))
    subscription = push_service.subscribe(application_server_key=other.application_server_key)
    user, device = unique("ha"), browser("browser", subscription)
    sent = job(user, [device])
    delivery = engine(stack, WebPushProvider(load_vapid_key(vapid_pem), clock=lambda: NOW))

    records = delivery.process(delivery.new_state(), [sent], NOW)

    assert outcomes(records) == [("notify.status", "failed", "browser", 1, "HTTP 403 from push service"),
                                 ("notify.dlq", user.encode())]
    assert push_service.received == []
    # Nothing was sent, so the claim was released: with the right key, a replay delivers.
    fixed = engine(stack, other)
    assert outcomes(fixed.process(fixed.new_state(), [sent], NOW)) == [("notify.status", "sent", "browser", 1, None)]
    assert [decrypted(m)["data"]["notification_id"] for m in push_service.wait_for(1)] == [sent["notification_id"]]
