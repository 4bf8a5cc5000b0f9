"""The Web Push and FCM peers speak the real protocols: the real client libraries deliver to them,
their checks refuse what the real services refuse, and injected failures surface as the clients'
real errors. No session stack is needed."""

from __future__ import annotations

import json
import time
import warnings

import firebase_admin
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from firebase_admin import exceptions, messaging
from py_vapid import Vapid
from py_vapid.utils import b64urlencode
from pywebpush import WebPushException, webpush

from peers.fcm import FcmService, fcm_app
from peers.webpush import WebPushService, subscription_info

SUB = "mailto:ops@example.com"


def vapid_keys() -> tuple[str, str]:
    """(private key as pywebpush takes it: b64url DER, application server key: b64url public point)."""
    vapid = Vapid()
    vapid.generate_keys()
    private = vapid.private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
    public = vapid.public_key.public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    return b64urlencode(private), b64urlencode(public)


def push(subscription: dict, data: str | None, private_key: str | None, **claims) -> object:
    return webpush(subscription_info(subscription), data=data, vapid_private_key=private_key,
                   vapid_claims={"sub": SUB, **claims} if private_key else None, ttl=60, timeout=10)


@pytest.fixture
def push_service():
    with WebPushService() as service:
        yield service


@pytest.fixture
def fcm():
    with FcmService() as service:
        yield service


# -- Web Push -------------------------------------------------------------------------------------

def test_pywebpush_delivers_a_payload_the_browser_decrypts(push_service):
    private_key, server_key = vapid_keys()
    subscription = push_service.subscribe(application_server_key=server_key)
    body = json.dumps({"notification_id": "n-1", "title": "Order shipped", "body": "Åpen pakke 📦"})

    response = webpush(subscription_info(subscription), data=body, vapid_private_key=private_key,
                       vapid_claims={"sub": SUB}, ttl=3600, headers={"Urgency": "high", "Topic": "order-42"},
                       timeout=10)

    assert response.status_code == 201
    assert response.headers["Location"].startswith(f"{push_service.url}/message/")
    assert push_service.wait_for(1) == [{"subscription": subscription["id"], "payload": body.encode(),
                                         "ttl": 3600, "urgency": "high", "topic": "order-42", "vapid_sub": SUB}]


def test_bad_vapid_is_refused_and_nothing_is_delivered(push_service):
    private_key, server_key = vapid_keys()
    other_key, _ = vapid_keys()
    restricted = push_service.subscribe(application_server_key=server_key)
    open_subscription = push_service.subscribe()

    cases = [
        (restricted, other_key, {}, 403),  # signed, but not with the subscription's application server key
        (open_subscription, private_key, {"aud": "https://push.example.com"}, 403),  # another service's aud
        (open_subscription, private_key, {"exp": int(time.time()) + 3 * 86400}, 403),  # exp beyond 24 h
        (open_subscription, None, {}, 401),  # no VAPID at all
    ]
    for subscription, key, claims, status in cases:
        with pytest.raises(WebPushException) as refused:
            push(subscription, '{"n": 1}', key, **claims)
        assert refused.value.status_code == status, refused.value

    assert push_service.received == []
    assert [r["status"] for r in push_service.rejected] == [403, 403, 403, 401]


def test_injected_failures_answer_like_a_push_service(push_service):
    private_key, _ = vapid_keys()
    subscription = push_service.subscribe()

    push_service.fail(subscription["id"], 410, times=1)
    with pytest.raises(WebPushException) as gone:
        push(subscription, "first", private_key)
    assert gone.value.status_code == 410
    assert push(subscription, "second", private_key).status_code == 201  # times=1: the next one goes through

    push_service.fail(subscription["id"], 429, times=2, retry_after=30)
    for _ in range(2):
        with pytest.raises(WebPushException) as throttled:
            push(subscription, "throttled", private_key)
        assert throttled.value.status_code == 429
        assert throttled.value.retry_after == "30"
    assert push(subscription, "third", private_key).status_code == 201

    push_service.unsubscribe(subscription["id"])
    for _ in range(2):
        with pytest.raises(WebPushException) as unsubscribed:
            push(subscription, "never", private_key)
        assert unsubscribed.value.status_code == 410

    assert [m["payload"] for m in push_service.received] == [b"second", b"third"]


def test_push_service_checks_rfc8030_headers(push_service):
    private_key, _ = vapid_keys()
    subscription = push_service.subscribe()
    vapid = Vapid.from_string(private_key).sign({"sub": SUB, "aud": push_service.url,
                                                 "exp": int(time.time()) + 3600})
    endpoint = subscription["endpoint"]
    with httpx.Client(timeout=10) as client:
        assert client.post(endpoint, headers=vapid).status_code == 400  # no TTL
        assert client.post(endpoint, headers={**vapid, "TTL": "0", "Urgency": "asap"}).status_code == 400
        assert client.post(endpoint, headers={**vapid, "TTL": "0", "Content-Encoding": "aesgcm"},
                           content=b"x" * 100).status_code == 415
        assert client.post(endpoint, headers={**vapid, "TTL": "0", "Content-Encoding": "aes128gcm"},
                           content=b"x" * 100).status_code == 400  # not encrypted for this browser
        assert client.post(f"{push_service.url}/push/unknown", headers={**vapid, "TTL": "0"}).status_code == 404
        assert client.post(endpoint, headers={**vapid, "TTL": "5"}).status_code == 201  # no payload is allowed
    assert push_service.received == [{"subscription": subscription["id"], "payload": b"", "ttl": 5,
                                      "urgency": None, "topic": None, "vapid_sub": SUB}]


# -- FCM ------------------------------------------------------------------------------------------

def test_send_each_reaches_the_local_fcm_with_exact_fields(fcm):
    app = fcm_app(fcm)
    fcm.unregister("device-gone")
    alert = messaging.Message(
        fid="device-a",
        notification=messaging.Notification(title="Order shipped", body="Your parcel is on its way"),
        data={"notification_id": "n-1", "deep_link": "/orders/42"},
        android=messaging.AndroidConfig(collapse_key="order-42", ttl=3600, priority="high"),
        apns=messaging.APNSConfig(headers={"apns-priority": "10", "apns-collapse-id": "order-42"}),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # firebase-admin 7 deprecates token= for fid=
        legacy = messaging.Message(token="device-b", data={"notification_id": "n-2"})
    gone = messaging.Message(fid="device-gone", data={"notification_id": "n-3"})

    batch = messaging.send_each([alert, legacy, gone], app=app)

    assert (batch.success_count, batch.failure_count) == (2, 1)
    failure = batch.responses[2].exception
    assert isinstance(failure, messaging.UnregisteredError)
    assert failure.http_response.status_code == 404
    received = {m["message"].get("fid") or m["message"].get("token"): m for m in fcm.wait_for(2)}
    assert received["device-a"]["message"] == {
        "fid": "device-a",
        "notification": {"title": "Order shipped", "body": "Your parcel is on its way"},
        "data": {"notification_id": "n-1", "deep_link": "/orders/42"},
        "android": {"collapse_key": "order-42", "ttl": "3600s", "priority": "high"},
        "apns": {"headers": {"apns-priority": "10", "apns-collapse-id": "order-42"}},
    }
    assert received["device-b"]["message"] == {"token": "device-b", "data": {"notification_id": "n-2"}}
    assert {batch.responses[0].message_id, batch.responses[1].message_id} == {m["name"] for m in received.values()}
    assert all(m["name"].startswith("projects/notifyflow-test/messages/") for m in received.values())
    # the production credential path ran: JWT bearer grant against the local token_uri, then Bearer
    assert all(m["bearer"].startswith("ya29.local-") for m in received.values())


def test_injected_fcm_errors_surface_as_firebase_admin_exceptions(fcm):
    app = fcm_app(fcm)
    message = messaging.Message(fid="device-a", data={"k": "v"})

    fcm.fail("device-a", 503, times=1)
    started = time.monotonic()
    with pytest.raises(exceptions.UnavailableError):
        messaging.send(message, app=app)
    assert time.monotonic() - started < 2  # retries=0: firebase-admin's 503 backoff is off
    assert [r["status"] for r in fcm.rejected] == [503]

    fcm.fail("device-a", 429, retry_after=7)
    batch = messaging.send_each([message], app=app)
    quota = batch.responses[0].exception
    assert isinstance(quota, messaging.QuotaExceededError)
    assert quota.http_response.headers["Retry-After"] == "7"

    fcm.fail("device-a", 400)
    with pytest.raises(exceptions.InvalidArgumentError):
        messaging.send(message, app=app)

    fcm.fail("device-a", 0, times=0)  # stop failing
    assert messaging.send(message, app=app) == "projects/notifyflow-test/messages/1"
    assert messaging.send(message, app=app, dry_run=True) == "projects/notifyflow-test/messages/fake_message_id"
    assert len(fcm.received) == 1  # validate_only is checked, not delivered


def test_local_fcm_validates_like_the_v1_api(fcm):
    url = f"{fcm.url}/v1/projects/{fcm.project_id}/messages:send"
    bearer = {"Authorization": "Bearer anything"}
    with httpx.Client(timeout=10) as client:
        def send(body, headers=bearer):
            response = client.post(url, json=body, headers=headers)
            error = response.json().get("error")
            return response.status_code, error["status"] if error else None

        assert send({"message": {"token": "t", "data": {"k": "v"}}}, headers={}) == (401, "UNAUTHENTICATED")
        assert send({"message": {"token": "t", "topic": "news"}}) == (400, "INVALID_ARGUMENT")
        assert send({"message": {"data": {"k": "v"}}}) == (400, "INVALID_ARGUMENT")
        assert send({"message": {"token": "t", "data": {"count": 3}}}) == (400, "INVALID_ARGUMENT")
        assert send({"message": {"token": "t", "android": {"ttl": 3600}}}) == (400, "INVALID_ARGUMENT")
        assert send({"message": {"topic": "news", "data": {"k": "v"}}}) == (200, None)
        assert client.post(f"{fcm.url}/v1/projects/other/messages:send", json={"message": {"topic": "x"}},
                           headers=bearer).status_code == 404
    assert [m["message"] for m in fcm.received] == [{"topic": "news", "data": {"k": "v"}}]


def test_fcm_app_leaves_firebase_admin_pointed_at_google_and_is_deleted_on_stop():
    original = messaging._MessagingService.FCM_URL
    with FcmService() as service:
        app = fcm_app(service)
        assert messaging._MessagingService.FCM_URL == original
        assert firebase_admin.get_app(app.name) is app
    with pytest.raises(ValueError):
        firebase_admin.get_app(app.name)
