"""FCM and Web Push rendering, targeting, configuration and error mapping, without a network
(tests/integration/test_fcm_webpush_providers.py sends the same through the local peers)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import warnings
from datetime import UTC, datetime, timedelta

import http_ece
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from firebase_admin import exceptions, messaging
from py_vapid import Vapid
from pywebpush import WebPushException

from kernel.topics import codec_for, outbox_topic
from sinks.engine import Result, Send
from sinks.fcm import FcmProvider, fcm_result, render_fcm
from sinks.jobs import presentation
from sinks.webpush import (MAX_PAYLOAD_BYTES, WebPushProvider, encrypt, load_vapid_key, render_webpush, topic,
                           webpush_result)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SUBSCRIPTION = {"endpoint": "https://push.example.com/sub/1", "p256dh": "p256dh-1", "auth": "auth-1"}
DEVICES = [
    {"device_id": "phone", "platform": "android", "token": "fcm-phone", "web_push": None},
    {"device_id": "laptop", "platform": "desktop", "token": "fcm-laptop", "web_push": None},
    {"device_id": "iphone", "platform": "ios", "token": "apns-iphone", "web_push": None},
    {"device_id": "tablet", "platform": "android", "token": None, "web_push": None},
    {"device_id": "browser", "platform": "web", "token": None, "web_push": SUBSCRIPTION},
]
ACTIONS = [{"id": "view", "title": "View", "action": "open", "icon": None},
           {"id": "retry", "title": "Re-run", "action": "https://ci.example.com/42/retry", "icon": "https://x/r.png"},
           {"id": "mute", "title": "Mute", "action": "mute", "icon": None}]


def job(lane: str = "normal", **fields) -> dict:
    """A complete push DeliveryJob, defaults filled by the codec."""
    codec = codec_for(outbox_topic("push", lane))
    return codec.decode(codec.encode({
        "job_id": "n1:ana:push:0", "notification_id": "n1", "revision": 0, "request_ids": ["n1"],
        "user_id": "ana", "tenant": "acme", "channel": "push", "lane": lane, "kind": "single",
        "priority": "normal", "type": "info", "category": "ci", "title": "Build #42 failed",
        "body": "3 tests failed on main", "html_body": "3 tests failed on main", "locale": "en",
        "collapse_key": "build-42", "created_at": NOW, "devices": DEVICES, **fields}))


def v1_json(message: messaging.Message) -> dict:
    """The message as firebase-admin sends it to FCM's HTTP v1 API."""
    return json.loads(str(message))


def error_response(status: int, headers: dict | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code, response.headers = status, requests.structures.CaseInsensitiveDict(headers or {})
    return response


# -- FCM ------------------------------------------------------------------------------------------

def test_fcm_message_carries_everything_the_app_shows_and_acts_on():
    full = job(priority="critical", deep_link="app://builds/42", image_url="https://ci.example.com/42.png",
               actions=ACTIONS, payload={"build": "42", "notification_id": "spoofed", "google.x": "no", "from": "x"},
               expires_at=NOW + timedelta(hours=1, seconds=30))

    assert v1_json(render_fcm(full, "fcm-phone", NOW)) == {
        "token": "fcm-phone",
        "notification": {"title": "Build #42 failed", "body": "3 tests failed on main",
                         "image": "https://ci.example.com/42.png"},
        # the payload's own keys, never overriding ours nor using the keys FCM reserves
        "data": {"build": "42", "notification_id": "n1", "category": "ci", "deep_link": "app://builds/42",
                 "actions": '[{"id":"view","title":"View","action":"open"},{"id":"retry","title":"Re-run",'
                            '"action":"https://ci.example.com/42/retry","icon":"https://x/r.png"},'
                            '{"id":"mute","title":"Mute","action":"mute"}]'},
        "android": {"collapse_key": "build-42", "priority": "high", "ttl": "3630s",
                    "notification": {"tag": "build-42", "click_action": "app://builds/42",
                                     "default_sound": True, "default_vibrate_timings": True}},
    }


def test_fcm_message_without_link_expiry_or_https_image_leaves_them_out():
    plain = job(priority="high", image_url="http://insecure.example.com/x.png")
    assert v1_json(render_fcm(plain, "fcm-phone", NOW)) == {
        "token": "fcm-phone",
        "notification": {"title": "Build #42 failed", "body": "3 tests failed on main"},
        "data": {"notification_id": "n1", "category": "ci"},
        "android": {"collapse_key": "build-42", "priority": "high",
                    "notification": {"tag": "build-42", "default_sound": True, "default_vibrate_timings": True}},
    }
    assert v1_json(render_fcm(job(priority="low"), "t", NOW))["android"]["priority"] == "normal"


# The user's push sound and vibration; a job without preferences means the schema's defaults (both on).
SOUND_AND_VIBRATION = [None, {}, {"sound": False}, {"vibration": False}, {"sound": False, "vibration": False}]


def wants(presentation: dict | None) -> tuple[bool, bool]:
    return (presentation or {}).get("sound", True), (presentation or {}).get("vibration", True)


def test_a_job_without_presentation_means_the_schemas_defaults():
    assert presentation(job(presentation=None)) == job(presentation={})["presentation"]


@pytest.mark.parametrize("preferences", SOUND_AND_VIBRATION)
def test_fcm_asks_for_the_default_sound_and_vibration_only_when_the_user_wants_them(preferences):
    sound, vibration = wants(preferences)
    for priority in ("critical", "normal"):
        android = v1_json(render_fcm(job(priority=priority, presentation=preferences), "t", NOW))["android"]
        assert android["notification"] == {"tag": "build-42", "default_sound": sound,
                                           "default_vibrate_timings": vibration}


def test_fcm_ttl_counts_down_to_zero_and_is_capped_at_four_weeks():
    assert v1_json(render_fcm(job(expires_at=NOW - timedelta(minutes=5)), "t", NOW))["android"]["ttl"] == "0s"
    far = job(expires_at=NOW + timedelta(days=90))
    assert v1_json(render_fcm(far, "t", NOW))["android"]["ttl"] == f"{28 * 24 * 3600}s"


def test_rendering_a_registration_token_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        render_fcm(job(), "fcm-phone", NOW)


def test_fcm_targets_android_and_desktop_devices_with_a_token():
    provider = FcmProvider(app=None)
    assert [d["device_id"] for d in provider.targets(job())] == ["phone", "laptop"]
    assert provider.targets(job(devices=[DEVICES[2], DEVICES[4]])) == []
    assert (provider.name, provider.batch_size) == ("fcm", 500)


def response(exception: Exception | None = None, message_id: str = "projects/p/messages/1") -> messaging.SendResponse:
    return messaging.SendResponse({"name": message_id} if exception is None else None, exception)


@pytest.mark.parametrize(("error", "expected"), [
    (messaging.UnregisteredError("Requested entity was not found."),
     Result("permanent", "UnregisteredError: Requested entity was not found.", state="token_invalid")),
    (messaging.SenderIdMismatchError("SenderId mismatch"),
     Result("permanent", "SenderIdMismatchError: SenderId mismatch", state="token_invalid")),
    (exceptions.InvalidArgumentError("bad"), Result("permanent", "InvalidArgumentError: bad", state="failed")),
    (exceptions.UnavailableError("down"), Result("transient", "UnavailableError: down")),
    (exceptions.InternalError("oops", http_response=error_response(500)), Result("transient", "InternalError: oops")),
    (messaging.QuotaExceededError("slow down", http_response=error_response(429, {"Retry-After": "7"})),
     Result("transient", "QuotaExceededError: slow down", retry_after=7.0)),
    (exceptions.UnavailableError("later", http_response=error_response(
        503, {"retry-after": "Wed, 25 Nov 2026 12:01:00 GMT"})),
     Result("transient", "UnavailableError: later", retry_after=60.0)),
    (exceptions.UnauthenticatedError("no token"), Result("transient", "UnauthenticatedError: no token")),
])
def test_fcm_errors_map_to_outcomes(error, expected):
    assert fcm_result(response(error), NOW) == expected


def test_fcm_success_keeps_the_message_name():
    assert fcm_result(response(), NOW) == Result("sent", provider_id="projects/p/messages/1")


def test_fcm_job_that_cannot_be_encoded_fails_alone_without_a_call():
    broken = job()
    broken["payload"] = {"count": 3}  # not a string: FCM data values must be
    device = DEVICES[0]
    assert asyncio.run(FcmProvider(app=None).send([Send(broken, device)])) == [
        Result("permanent", "invalid FCM message: Message.data must not contain non-string values.")]


def test_fcm_from_env_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="GOOGLE_APPLICATION_CREDENTIALS is not set"):
        FcmProvider.from_env({"FCM_PROJECT_ID": "p"})
    (tmp_path / "key.json").write_text("{}")
    with pytest.raises(ValueError, match="GOOGLE_APPLICATION_CREDENTIALS=.*key.json: not a usable"):
        FcmProvider.from_env({"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "key.json")})


# -- Web Push -------------------------------------------------------------------------------------

def test_web_push_payload_is_what_the_service_worker_shows():
    full = job(priority="critical", revision=2, deep_link="https://ci.example.com/42", icon="https://x/i.png",
               image_url="https://x/42.png", badge="https://x/b.png", actions=ACTIONS,
               expires_at=NOW + timedelta(minutes=10))
    payload, ttl, urgency, push_topic = render_webpush(full, NOW)
    assert json.loads(payload) == {
        "title": "Build #42 failed", "body": "3 tests failed on main", "icon": "https://x/i.png",
        "image": "https://x/42.png", "badge": "https://x/b.png", "tag": "build-42",
        "data": {"notification_id": "n1", "url": "https://ci.example.com/42", "category": "ci"},
        "actions": [{"action": "view", "title": "View"}, {"action": "retry", "title": "Re-run"}],
        "renotify": True, "requireInteraction": True, "vibrate": [200, 100, 200]}
    assert (ttl, urgency, push_topic) == (600, "high", topic("build-42"))


def test_web_push_minimal_payload_leaves_absent_fields_out():
    payload, ttl, urgency, _ = render_webpush(job(), NOW)
    assert json.loads(payload) == {
        "title": "Build #42 failed", "body": "3 tests failed on main", "tag": "build-42",
        "data": {"notification_id": "n1", "category": "ci"}, "actions": [],
        "renotify": False, "requireInteraction": False, "vibrate": [200, 100, 200]}
    assert (ttl, urgency) == (86400, "normal")
    assert render_webpush(job(expires_at=NOW - timedelta(seconds=1)), NOW)[1] == 0


@pytest.mark.parametrize(("preferences", "alerting"), [
    (None, {"vibrate": [200, 100, 200]}),
    ({}, {"vibrate": [200, 100, 200]}),
    ({"sound": False}, {"vibrate": [200, 100, 200]}),  # the Notifications API cannot mute sound alone
    ({"vibration": False}, {}),
    ({"sound": False, "vibration": False}, {"silent": True}),
])
def test_web_push_is_silent_or_vibrates_as_the_user_wants(preferences, alerting):
    for priority in ("critical", "normal"):
        shown = json.loads(render_webpush(job(priority=priority, presentation=preferences), NOW)[0])
        assert {key: shown[key] for key in ("silent", "vibrate") if key in shown} == alerting
        assert shown["requireInteraction"] is (priority == "critical")


@pytest.mark.parametrize(("lane", "priority", "expected"), [
    ("critical", "critical", "high"), ("high", "high", "high"), ("normal", "normal", "normal"),
    ("normal", "low", "normal"), ("bulk", "low", "low"), ("bulk", "normal", "low"),
])
def test_web_push_urgency(lane, priority, expected):
    assert render_webpush(job(lane=lane, priority=priority), NOW)[2] == expected


def test_topic_is_a_short_url_safe_token_stable_per_collapse_key():
    long_key = "order:42/shipped?user=ana@example.com " * 5
    assert len(topic(long_key)) == 32 and set(topic(long_key)) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert topic("build-42") == topic("build-42") != topic("build-43")
    assert "build" not in topic("build-42")  # the push service learns nothing from it


@pytest.mark.parametrize("body", ["x" * 10_000, "é" * 5_000, "📦" * 3_000, '"\\\n' * 3_000])
def test_long_bodies_are_cut_to_fit_one_push(body):
    payload = render_webpush(job(body=body), NOW)[0]
    shown = json.loads(payload)
    assert MAX_PAYLOAD_BYTES - 12 <= len(payload.encode()) <= MAX_PAYLOAD_BYTES  # cut no more than needed
    assert shown["body"].endswith("…") and body.startswith(shown["body"][:-1])
    assert shown["title"] == "Build #42 failed"


def test_a_huge_title_is_cut_too_once_the_body_is_gone():
    shown = json.loads(render_webpush(job(title="T" * 5_000, body="b" * 100), NOW)[0])
    assert shown["body"] == "" and shown["title"].endswith("…")
    assert len(json.dumps(shown, separators=(",", ":"), ensure_ascii=False).encode()) <= MAX_PAYLOAD_BYTES


def test_web_push_targets_devices_with_a_subscription():
    provider = WebPushProvider(Vapid())
    assert [d["device_id"] for d in provider.targets(job())] == ["browser"]
    assert provider.targets(job(devices=DEVICES[:4])) == []
    assert (provider.name, provider.batch_size) == ("webpush", 100)


def push_error(status: int, headers: dict | None = None) -> WebPushException:
    return WebPushException(f"Push failed: {status}", response=error_response(status, headers))


@pytest.mark.parametrize(("error", "expected"), [
    (push_error(410), Result("permanent", "HTTP 410 from push service", state="token_invalid")),
    (push_error(404), Result("permanent", "HTTP 404 from push service", state="token_invalid")),
    (push_error(429, {"Retry-After": "30"}), Result("transient", "HTTP 429 from push service", retry_after=30.0)),
    (push_error(503), Result("transient", "HTTP 503 from push service")),
    (push_error(502, {"Retry-After": "5"}), Result("transient", "HTTP 502 from push service", retry_after=5.0)),
    (push_error(500), Result("transient", "HTTP 500 from push service")),
    (push_error(400), Result("permanent", "HTTP 400 from push service")),
    (push_error(401), Result("permanent", "HTTP 401 from push service")),
    (push_error(403), Result("permanent", "HTTP 403 from push service")),
    (push_error(413), Result("permanent", "HTTP 413 from push service")),
    (requests.ConnectionError("refused"), Result("transient", "ConnectionError: refused")),
    (WebPushException("Invalid p256dh key specified"),
     Result("permanent", "cannot push: WebPushException: WebPushException: Invalid p256dh key specified")),
])
def test_web_push_errors_map_to_outcomes(error, expected):
    assert webpush_result(error, NOW) == expected


@pytest.mark.parametrize("payload", [b"{}", "{\"title\":\"Caf\u00e9 \U0001f389\"}".encode(), b"x" * MAX_PAYLOAD_BYTES])
def test_web_push_encryption_is_what_a_browser_decrypts(payload):
    """RFC 8291 aes128gcm, checked by http_ece (what pywebpush encrypted with) as the browser's side."""
    browser, auth = ec.generate_private_key(ec.SECP256R1()), os.urandom(16)
    point = browser.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    body = encrypt(payload, point, auth)
    assert http_ece.decrypt(body, private_key=browser, auth_secret=auth, version="aes128gcm") == payload
    assert encrypt(payload, point, auth)[:16] != body[:16]  # a fresh salt (and ECDH key) every message


def test_a_subscription_that_cannot_be_encrypted_for_fails_without_sending():
    broken = job(devices=[{**DEVICES[4], "web_push": {**SUBSCRIPTION, "p256dh": "!!", "auth": "x"}}])
    [result] = asyncio.run(WebPushProvider(Vapid.from_string(raw_key()), clock=lambda: NOW).send(
        [Send(broken, broken["devices"][0])]))
    assert (result.outcome, result.state) == ("permanent", "failed")
    assert result.reason.startswith("cannot push: ")


# -- VAPID configuration --------------------------------------------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_key(key: ec.EllipticCurvePrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def public_point(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(key.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint))


def test_vapid_key_is_read_as_pem_raw_or_der_from_env_or_file(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    der = b64url(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    (tmp_path / "vapid.pem").write_text(pem)
    for environ in ({"VAPID_PRIVATE_KEY": pem}, {"VAPID_PRIVATE_KEY": raw_key(key)}, {"VAPID_PRIVATE_KEY": der},
                    {"VAPID_PRIVATE_KEY_FILE": str(tmp_path / "vapid.pem")}):
        provider = WebPushProvider.from_env(environ)
        assert provider.application_server_key == public_point(key)
        assert provider.subject == "mailto:ops@notifyflow.local"
    assert WebPushProvider.from_env({"VAPID_PRIVATE_KEY": pem, "VAPID_SUBJECT": "https://notifyflow.example"}) \
        .subject == "https://notifyflow.example"


def test_vapid_configuration_errors_name_the_variable(tmp_path):
    with pytest.raises(ValueError, match="VAPID_PRIVATE_KEY .or VAPID_PRIVATE_KEY_FILE. is not set"):
        WebPushProvider.from_env({"VAPID_SUBJECT": "mailto:ops@example.com"})
    with pytest.raises(ValueError, match="VAPID_PRIVATE_KEY_FILE=.*missing.pem"):
        WebPushProvider.from_env({"VAPID_PRIVATE_KEY_FILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ValueError, match="VAPID_SUBJECT must be a mailto: or https: URI"):
        WebPushProvider.from_env({"VAPID_PRIVATE_KEY": raw_key(), "VAPID_SUBJECT": "ops@example.com"})
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    for bad in (p384, "not a key"):
        with pytest.raises(ValueError, match="VAPID private key is not a P-256 key"):
            load_vapid_key(bad)
