"""The SMS (SNS) and APNs providers driven through the delivery engine with real Redis claims,
against the local peers: moto's SNS server and an HTTP/2 APNs service that checks the JWT.

Shown for each: the exact message the peer received, a transient failure retried then sent, a
permanent failure with its side effects, and a replay of the same job sending nothing."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import botocore.awsrequest
import jwt
import pytest

from connectors import redis
from kernel.records import status_record
from kernel.topics import codec_for
from notifyflow.stack import free_port
from peers.apns import ApnsService
from peers.aws import MotoServer
from sinks.apns import ApnsProvider, load_key
from sinks.circuit import Breakers
from sinks.claims import RedisClaims
from sinks.engine import Delivery
from sinks.jobs import status
from sinks.retry import RetryPolicy
from sinks.sms import SmsProvider

from flow_harness import unique


def job(channel: str, user: str, **fields) -> dict:
    """A complete DeliveryJob: the codec fills every default."""
    notification_id = unique("n")
    minimal = {"job_id": f"{notification_id}:{user}:{channel}:0", "notification_id": notification_id,
               "revision": 0, "request_ids": [notification_id], "user_id": user, "tenant": "default",
               "channel": channel, "lane": "normal", "kind": "single", "priority": "normal", "type": "message",
               "category": "messages", "title": "Bob sent you a message", "body": "Lunch?", "html_body": "Lunch?",
               "locale": "en", "collapse_key": notification_id, "created_at": datetime.now(UTC), **fields}
    codec = codec_for(f"notify.outbox.{channel}.{minimal['lane']}")
    return codec.decode(codec.encode(minimal))


def delivery(stack, provider) -> Delivery:
    return Delivery(provider, RedisClaims(redis.client(stack.urls["REDIS_URL"])), Breakers(),
                    RetryPolicy(delays=(0.1, 0.2)))


def sent(job: dict, now: datetime, provider: str, attempt: int = 1, device: dict | None = None):
    return status_record(status(job, "sent", now, attempt=attempt, device=device, provider=provider))


# -- SMS through SNS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws():
    with MotoServer() as server:
        yield server


@pytest.fixture
def sms(aws):
    return SmsProvider.from_env({"AWS_ENDPOINT_URL": aws.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
                                 "AWS_SECRET_ACCESS_KEY": "testing", "SMS_SENDER_ID": "NotifyFlow"})


def phone() -> str:
    return "+1555" + "".join(secrets.choice("0123456789") for _ in range(7))


def texts_to(aws, number: str) -> list[dict]:
    return [sms for sms in aws.sent_sms() if sms["phone_number"] == number]


class FakeRaw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_):
        yield self.body


def answer_first_publishes(provider: SmsProvider, code: str, times: int, status: int = 400) -> list[dict]:
    """AWS's answers moto cannot give (throttling, opt-out): the next `times` publishes get an SNS
    error response, parsed by botocore like a real one; later ones reach moto. Returns the requests."""
    answered: list[dict] = []

    def before_send(request, **_):
        if len(answered) >= times:
            return None
        answered.append({"url": request.url, "body": request.body})
        body = (f'<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type>'
                f"<Code>{code}</Code><Message>{code} for this number</Message></Error>"
                f"<RequestId>{unique('r')}</RequestId></ErrorResponse>").encode()
        return botocore.awsrequest.AWSResponse(request.url, status, {"content-type": "text/xml"}, FakeRaw(body))

    provider.client.meta.events.register("before-send.sns.Publish", before_send)
    return answered


def wire(provider: SmsProvider) -> list[dict]:
    """The form fields of every Publish request as it leaves botocore (moto does not keep attributes)."""
    seen: list[dict] = []
    provider.client.meta.events.register("before-send.sns.Publish", lambda request, **_: seen.append(
        {k: v[0] for k, v in parse_qs(request.body if isinstance(request.body, str)
                                      else request.body.decode()).items()}))
    return seen


def test_sms_is_published_with_the_exact_text_and_a_replay_sends_nothing(stack, aws, sms):
    user, number = unique("ana"), phone()
    requests = wire(sms)
    message = job("sms", user, address=number, priority="high", title="Security alert",
                  body="New sign-in from\n  Firefox on Linux", deep_link="https://nf.test/s/1")
    engine, now = delivery(stack, sms), datetime.now(UTC)

    [record] = engine.process(engine.new_state(), [message], now)

    [text] = texts_to(aws, number)
    assert text["message"] == "Security alert: New sign-in from Firefox on Linux https://nf.test/s/1"
    assert record == sent(message, now, "sns")
    [request] = requests
    assert {k: v for k, v in request.items() if k.startswith("MessageAttributes")} == {
        "MessageAttributes.entry.1.Name": "AWS.SNS.SMS.SMSType",
        "MessageAttributes.entry.1.Value.DataType": "String",
        "MessageAttributes.entry.1.Value.StringValue": "Transactional",
        "MessageAttributes.entry.2.Name": "AWS.SNS.SMS.SenderID",
        "MessageAttributes.entry.2.Value.DataType": "String",
        "MessageAttributes.entry.2.Value.StringValue": "NotifyFlow"}
    # The same job again, as after a crash: the claim holds, nothing reaches SNS.
    later = now + timedelta(seconds=5)
    assert engine.process(engine.new_state(), [message], later) == [status_record(status(
        message, "deduplicated", later, provider="sns", reason="already claimed"))]
    assert len(texts_to(aws, number)) == 1


def test_sms_throttling_is_retried_then_sent(stack, aws, sms):
    user, number = unique("bo"), phone()
    message = job("sms", user, address=number, body="ж" * 300)  # UCS-2, cut to three parts
    answered = answer_first_publishes(sms, "Throttling", times=1)
    engine, now = delivery(stack, sms), datetime.now(UTC)
    state = engine.new_state()

    assert engine.process(state, [message], now) == [status_record(status(
        message, "retried", now, provider="sns", reason="Throttling: Throttling for this number"))]
    assert len(answered) == 1 and texts_to(aws, number) == []
    assert engine.due(state) <= now + timedelta(seconds=0.2)
    later = now + timedelta(seconds=1)
    assert engine.release(state, later) == [sent(message, later, "sns", attempt=2)]
    [text] = texts_to(aws, number)
    assert text["message"] == "Bob sent you a message: " + "ж" * (3 * 67 - len("Bob sent you a message: ") - 1) + "…"
    assert engine.is_empty(state)


def test_an_opted_out_number_fails_and_falls_back_or_is_dead_lettered_with_nowhere_else_to_go(stack, aws, sms):
    user, number = unique("cy"), phone()
    fallback = [{"channel": "email", "after_seconds": 0, "address": "cy@example.com"}]
    message = job("sms", user, address=number, fallback=fallback)
    answer_first_publishes(sms, "OptedOut", times=2)
    engine, now = delivery(stack, sms), datetime.now(UTC)

    failed, (moved_topic, moved_key, moved) = engine.process(engine.new_state(), [message], now)

    assert failed == status_record(status(message, "failed", now, provider="sns",
                                          reason="OptedOut: OptedOut for this number"))
    assert (moved_topic, moved_key) == ("notify.outbox.email.normal", user.encode())
    assert (moved["channel"], moved["address"], moved["fallback"]) == ("email", "cy@example.com", [])

    alone = job("sms", user, address=number)  # a new notification id: its own claim
    _, (dlq_topic, dlq_key, dead) = engine.process(engine.new_state(), [alone], now)
    assert (dlq_topic, dlq_key, dead["stage"], dead["reason"]) == (
        "notify.dlq", user.encode(), "deliver_sms", "OptedOut: OptedOut for this number")
    assert codec_for("notify.outbox.sms.normal").decode(dead["original"]) == alone
    assert texts_to(aws, number) == []


def test_a_number_that_is_not_e164_is_never_published(stack, aws, sms):
    user = unique("di")
    message = job("sms", user, address="555-0100")
    engine, now = delivery(stack, sms), datetime.now(UTC)
    before = len(aws.sent_sms())

    records = engine.process(engine.new_state(), [message], now)

    assert records[0] == status_record(status(message, "failed", now, provider="sns", reason="no sms target"))
    assert [topic for topic, _, _ in records] == ["notify.status", "notify.dlq"]
    assert len(aws.sent_sms()) == before


# -- APNs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apns_service():
    with ApnsService() as service:
        yield service


def apns_provider(service: ApnsService, clock=time.time) -> ApnsProvider:
    made = ApnsProvider.from_env({"APNS_URL": service.url, "APNS_KEY_ID": service.key_id,
                                  "APNS_TEAM_ID": service.team_id, "APNS_BUNDLE_ID": service.bundle_id,
                                  "APNS_PRIVATE_KEY": service.private_key_pem, "APNS_CA_FILE": service.ca_pem_path})
    made.clock = clock
    return made


def iphone(name: str = "iphone", token: str | None = None) -> dict:
    return {"device_id": unique(name), "platform": "ios", "token": token or secrets.token_hex(32), "web_push": None}


def received_by(service: ApnsService, token: str) -> list[dict]:
    return [r for r in service.received if r["token"] == token]


def test_apns_delivers_the_exact_payload_over_http2_and_a_replay_sends_nothing(stack, apns_service):
    user, phone_, ipad = unique("ana"), iphone(), iphone("ipad")
    android = {"device_id": unique("pixel"), "platform": "android", "token": "fcm-token", "web_push": None}
    actions = [{"id": "reply", "title": "Reply", "action": "reply", "icon": None},
               {"id": "mute", "title": "Mute", "action": "mute", "icon": None}]
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    message = job("push", user, devices=[phone_, android, ipad], priority="critical", lane="critical", badge="4",
                  actions=actions, image_url="https://img.test/1.png", deep_link="app://chat/42",
                  payload={"chat": "42"}, collapse_key="chat-42", expires_at=expires)
    engine, now = delivery(stack, apns_provider(apns_service)), datetime.now(UTC)

    records = engine.process(engine.new_state(), [message], now)

    assert records == [sent(message, now, "apns", device=phone_), sent(message, now, "apns", device=ipad)]
    expected_payload = {
        "aps": {"alert": {"title": "Bob sent you a message", "body": "Lunch?"}, "badge": 4, "sound": "default",
                "category": "actions:reply,mute", "mutable-content": 1, "thread-id": "messages",
                "interruption-level": "time-sensitive"},
        "notification_id": message["notification_id"], "payload": {"chat": "42"}, "deep_link": "app://chat/42",
        "image_url": "https://img.test/1.png"}
    apns_ids = set()
    for device in (phone_, ipad):
        # The peer answers only over HTTP/2 (ALPN h2) with a JWT it verified.
        [got] = received_by(apns_service, device["token"])
        assert got["payload"] == expected_payload
        headers = got["headers"]
        assert {k: v for k, v in headers.items() if k.startswith("apns-")} == {
            "apns-push-type": "alert", "apns-topic": apns_service.bundle_id, "apns-priority": "10",
            "apns-expiration": str(int(expires.timestamp())), "apns-collapse-id": "chat-42",
            "apns-id": headers["apns-id"]}
        apns_ids.add(headers["apns-id"])
        scheme, _, token = headers["authorization"].partition(" ")
        assert scheme == "bearer" and jwt.get_unverified_header(token)["kid"] == apns_service.key_id
        assert jwt.decode(token, options={"verify_signature": False})["iss"] == apns_service.team_id
    assert len(apns_ids) == 2

    later = now + timedelta(seconds=5)
    assert engine.process(engine.new_state(), [message], later) == [
        status_record(status(message, "deduplicated", later, device=device, provider="apns",
                             reason="already claimed")) for device in (phone_, ipad)]
    assert len(received_by(apns_service, phone_["token"])) == len(received_by(apns_service, ipad["token"])) == 1


def test_apns_503_is_retried_then_sent_with_the_same_apns_id(stack, apns_service):
    user, device = unique("bo"), iphone()
    message = job("push", user, devices=[device], lane="bulk")
    apns_service.fail(device["token"], 503, "ServiceUnavailable", times=1)
    engine, now = delivery(stack, apns_provider(apns_service)), datetime.now(UTC)
    state = engine.new_state()

    assert engine.process(state, [message], now) == [status_record(status(
        message, "retried", now, device=device, provider="apns", reason="503 ServiceUnavailable"))]
    assert [r["status"] for r in apns_service.rejected if r["token"] == device["token"]] == [503]
    later = now + timedelta(seconds=1)
    assert engine.release(state, later) == [sent(message, later, "apns", attempt=2, device=device)]
    [got] = received_by(apns_service, device["token"])
    assert got["headers"]["apns-priority"] == "5"
    assert engine.is_empty(state)


def test_an_expired_provider_token_is_refreshed_and_the_send_retried(stack, apns_service):
    user, device = unique("cy"), iphone()
    message = job("push", user, devices=[device])
    clock = [time.time() - 3700]  # the cached JWT was minted more than an hour ago
    engine, now = delivery(stack, apns_provider(apns_service, clock=lambda: clock[0])), datetime.now(UTC)
    state = engine.new_state()

    assert engine.process(state, [message], now) == [status_record(status(
        message, "retried", now, device=device, provider="apns", reason="403 ExpiredProviderToken"))]
    clock[0] = time.time()
    later = now + timedelta(seconds=1)
    assert engine.release(state, later) == [sent(message, later, "apns", attempt=2, device=device)]
    [got] = received_by(apns_service, device["token"])
    token = got["headers"]["authorization"].removeprefix("bearer ")
    assert abs(jwt.decode(token, options={"verify_signature": False})["iat"] - time.time()) < 60


def test_apns_unreachable_is_retried_with_the_reason_other_providers_give(stack, apns_service):
    user, device = unique("ed"), iphone()
    message = job("push", user, devices=[device])
    provider = apns_provider(apns_service)
    provider.url = f"https://127.0.0.1:{free_port()}"  # nothing listens there: the connection is refused
    engine, now = delivery(stack, provider), datetime.now(UTC)
    state = engine.new_state()

    [(_, _, retried)] = engine.process(state, [message], now)
    assert retried["reason"].startswith("ConnectError: ")
    assert [retried] == [status(message, "retried", now, device=device, provider="apns", reason=retried["reason"])]
    provider.url = apns_service.url
    later = now + timedelta(seconds=1)
    assert engine.release(state, later) == [sent(message, later, "apns", attempt=2, device=device)]
    assert len(received_by(apns_service, device["token"])) == 1


def test_apns_sends_nothing_to_a_server_whose_certificate_it_cannot_verify(stack, apns_service):
    device = iphone()
    message = job("push", unique("fa"), devices=[device])
    # No APNS_CA_FILE: the peer's private CA is not among the roots the client trusts (certifi's).
    provider = ApnsProvider(key_id=apns_service.key_id, team_id=apns_service.team_id, bundle_id=apns_service.bundle_id,
                            private_key=load_key(apns_service.private_key_pem, "key"), url=apns_service.url)
    engine, now = delivery(stack, provider), datetime.now(UTC)

    [(_, _, retried)] = engine.process(engine.new_state(), [message], now)
    assert retried["status"] == "retried" and retried["reason"].startswith("ConnectError: SSL certificate")
    assert received_by(apns_service, device["token"]) == []


def test_dead_tokens_become_token_invalid_and_devices_tombstones(stack, apns_service):
    user, gone, malformed = unique("di"), iphone("gone"), iphone("bad", token="not-a-hex-token")
    apns_service.unregister(gone["token"])
    message = job("push", user, devices=[gone, malformed])
    engine, now = delivery(stack, apns_provider(apns_service)), datetime.now(UTC)

    records = engine.process(engine.new_state(), [message], now)

    def tombstone(device):
        return ("notify.devices", user.encode(), {
            "user_id": user, "device_id": device["device_id"], "platform": "ios", "token": device["token"],
            "web_push": None, "app_version": None, "registered_at": now, "active": False, "tenant": "default"})

    assert records == [
        status_record(status(message, "token_invalid", now, device=gone, provider="apns",
                             reason="410 Unregistered")), tombstone(gone),
        status_record(status(message, "token_invalid", now, device=malformed, provider="apns",
                             reason="400 BadDeviceToken")), tombstone(malformed)]
    assert received_by(apns_service, gone["token"]) == []
    # A token error says nothing about Apple's health: the circuit stays closed.
    assert engine.breakers["apns"].state(now.timestamp()) == "closed"
