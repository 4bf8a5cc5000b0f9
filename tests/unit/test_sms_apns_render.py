"""SMS and APNs rendering and outcome mapping, without a network: segments and encodings, the
exact APNs headers and payload, Apple's and AWS's errors as delivery outcomes, the JWT cache."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import botocore.stub
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.topics import codec_for
from sinks.apns import (MAX_PAYLOAD_BYTES, TOKEN_REFRESH_S, ApnsProvider, collapse_id, encode, render_apns,
                        response_result)
from sinks.engine import Result
from sinks.sms import SmsProvider, attributes, error_result, is_gsm7, parts, render_sms

NOW = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
IPHONE = {"device_id": "d-iphone", "platform": "ios", "token": "ab" * 32, "web_push": None}


def job(channel: str = "push", **fields) -> dict:
    """A complete DeliveryJob: the codec fills every default."""
    minimal = {"job_id": f"n-1:u-1:{channel}:0", "notification_id": "n-1", "revision": 0, "request_ids": ["n-1"],
               "user_id": "u-1", "tenant": "acme", "channel": channel, "lane": "normal", "kind": "single",
               "priority": "normal", "type": "message", "category": "messages", "title": "Bob",
               "body": "Lunch?", "html_body": "Lunch?", "locale": "en", "collapse_key": "n-1",
               "created_at": NOW, **fields}
    codec = codec_for(f"notify.outbox.{channel}.{minimal['lane']}")
    return codec.decode(codec.encode(minimal))


# -- SMS: encodings and segments ------------------------------------------------------------------


def test_gsm7_covers_the_basic_set_and_the_extension_table():
    assert is_gsm7("Hello @£$¥ èéùìò ÄÖÑÜ§¿ äöñüà ΔΦΓΛΩΠΨΣΘΞ ÆæßÉ ¡ {}[]~|^€\\")
    assert not is_gsm7("naïve")  # ï is not in GSM 03.38
    assert not is_gsm7("…")
    assert not is_gsm7("\x1b")  # ESC only introduces extension characters


@pytest.mark.parametrize(("text", "expected"), [
    ("", 0),
    ("a" * 160, 1),
    ("a" * 161, 2),
    ("a" * 306, 2),
    ("a" * 307, 3),
    ("€" * 80, 1),  # extension characters take two septets
    ("€" * 81, 2),
    ("a" * 152 + "€" + "a" * 152, 3),  # 306 septets, but an escape sequence is never split
    ("ж" * 70, 1),  # UCS-2
    ("ж" * 71, 2),
    ("ж" * 201, 3),
    ("ж" * 202, 4),
    ("a" * 100 + "ж", 2),  # one non-GSM character turns the whole text into UCS-2
    ("😀" * 35, 1),  # surrogate pairs take two code units
    ("😀" * 36, 2),
])
def test_parts(text, expected):
    assert parts(text) == expected


# -- SMS: rendering -------------------------------------------------------------------------------


def test_render_sms_joins_title_and_body_normalises_whitespace_and_adds_a_short_link():
    sent = job("sms", title="  Bob\n sent you a message ", body="Lunch\t\ttoday?\n\nAt noon",
               deep_link="https://ex.am/p/1")
    assert render_sms(sent) == "Bob sent you a message: Lunch today? At noon https://ex.am/p/1"
    assert render_sms(job("sms", title="", body="Your code is 123456")) == "Your code is 123456"


def test_render_sms_leaves_out_a_long_link():
    assert render_sms(job("sms", deep_link="https://example.com/" + "x" * 60)) == "Bob: Lunch?"


def test_a_long_gsm7_message_is_cut_to_three_parts_keeping_the_link_and_gsm7():
    link = "https://ex.am/p/1"
    text = render_sms(job("sms", title="Digest", body="word " * 200, deep_link=link))
    # "…" is not GSM-7: three dots keep the whole message at 153 septets per part, not 67.
    assert text.endswith("... " + link) and text.startswith("Digest: word word")
    assert is_gsm7(text) and parts(text) == 3
    assert len(text) > 440  # close to 3 x 153 septets


def test_a_long_ucs2_message_is_cut_with_an_ellipsis():
    text = render_sms(job("sms", title="Привет", body="ж" * 500))
    assert text.endswith("…") and text.startswith("Привет: жжж")
    assert parts(text) == 3 and len(text) == 3 * 67


def test_a_message_of_exactly_one_segment_is_kept_whole():
    body = "x" * (160 - len("Bob: "))
    assert render_sms(job("sms", body=body)) == "Bob: " + body


@settings(max_examples=200, deadline=None)
@given(title=st.text(max_size=200), body=st.text(max_size=1500),
       link=st.one_of(st.none(), st.text(min_size=1, max_size=70)))
def test_any_message_fits_three_parts(title, body, link):
    assert parts(render_sms(job("sms", title=title, body=body, deep_link=link))) <= 3


def test_sms_targets_only_e164_numbers():
    provider = SmsProvider(client=None)
    assert provider.targets(job("sms", address="+15555550100")) == [None]
    for address in ("+1 555 555 0100", "15555550100", "+0123456789", "+12345", None, "ana@example.com"):
        assert provider.targets(job("sms", address=address)) == []


@pytest.mark.parametrize(("priority", "kind"), [("critical", "Transactional"), ("high", "Transactional"),
                                                ("normal", "Promotional"), ("low", "Promotional")])
def test_sms_type_follows_priority(priority, kind):
    assert attributes(job("sms", priority=priority), None) == {
        "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": kind}}


@pytest.mark.parametrize(("code", "status", "outcome"), [
    ("Throttling", 400, "transient"),
    ("ThrottlingException", 400, "transient"),
    ("InternalError", 500, "transient"),
    ("SomethingNew", 503, "transient"),
    ("InvalidParameter", 400, "permanent"),
    ("OptedOut", 400, "permanent"),
    ("AuthorizationError", 403, "permanent"),
])
def test_sns_errors_map_to_outcomes(code, status, outcome):
    result = error_result(code, status, "why")
    assert (result.outcome, result.reason) == (outcome, f"{code}: why")
    assert result.state == "failed"


def stubbed_sms(sender_id: str | None = "NotifyFlow"):
    provider = SmsProvider.from_env({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                                     **({"SMS_SENDER_ID": sender_id} if sender_id else {})})
    return provider, botocore.stub.Stubber(provider.client)


def test_sms_publish_sends_exactly_the_documented_request():
    provider, stub = stubbed_sms()
    sent = job("sms", address="+15555550100", priority="high", title="Security alert", body="New sign-in")
    stub.add_response("publish", {"MessageId": "m-1"}, {
        "PhoneNumber": "+15555550100", "Message": "Security alert: New sign-in",
        "MessageAttributes": {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
                              "AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": "NotifyFlow"}}})
    with stub:
        assert provider.publish(sent) == Result("sent", provider_id="m-1")
    stub.assert_no_pending_responses()


def test_sms_publish_maps_client_errors():
    provider, stub = stubbed_sms(sender_id=None)
    stub.add_client_error("publish", "Throttling", "Rate exceeded", 400)
    stub.add_client_error("publish", "InvalidParameter", "Invalid parameter: PhoneNumber", 400)
    with stub:
        assert provider.publish(job("sms", address="+15555550100")) == Result(
            "transient", "Throttling: Rate exceeded")
        assert provider.publish(job("sms", address="+15555550100")) == Result(
            "permanent", "InvalidParameter: Invalid parameter: PhoneNumber", state="failed")


def test_sms_from_env_rejects_a_bad_sender_id():
    with pytest.raises(ValueError, match="SMS_SENDER_ID"):
        SmsProvider.from_env({"SMS_SENDER_ID": "Notify Flow!"})


# -- APNs: rendering ------------------------------------------------------------------------------


def test_render_apns_for_a_rich_critical_notification():
    actions = [{"id": "reply", "title": "Reply", "action": "reply", "icon": None},
               {"id": "mute", "title": "Mute", "action": "mute", "icon": None}]
    sent = job(priority="critical", lane="critical", badge="3", actions=actions, image_url="https://img/1.png",
               deep_link="app://chat/42", payload={"chat": "42"}, collapse_key="chat-42",
               expires_at=NOW + timedelta(hours=1))
    headers, payload = render_apns(sent, IPHONE, "com.example.app")
    assert headers == {"apns-push-type": "alert", "apns-topic": "com.example.app",
                       "apns-id": str(uuid.uuid5(uuid.UUID("6f1c2d0e-4a7b-5c3e-9d21-8b4f0a6e2c17"),
                                                 "n-1:u-1:push:0:d-iphone")),
                       "apns-priority": "10", "apns-expiration": str(int(NOW.timestamp()) + 3600),
                       "apns-collapse-id": "chat-42"}
    assert payload == {"aps": {"alert": {"title": "Bob", "body": "Lunch?"}, "badge": 3, "sound": "default",
                               "category": "actions:reply,mute", "mutable-content": 1, "thread-id": "messages",
                               "interruption-level": "time-sensitive"},
                       "notification_id": "n-1", "payload": {"chat": "42"}, "deep_link": "app://chat/42",
                       "image_url": "https://img/1.png"}


def test_render_apns_for_a_plain_bulk_notification():
    headers, payload = render_apns(job(lane="bulk", badge="many"), IPHONE, "com.example.app")
    assert headers["apns-priority"] == "5" and headers["apns-expiration"] == "0"
    assert payload == {"aps": {"alert": {"title": "Bob", "body": "Lunch?"}, "thread-id": "messages"},
                       "notification_id": "n-1", "payload": {}}


@pytest.mark.parametrize(("priority", "preferences", "sound"), [
    ("critical", None, "default"),
    ("high", {}, "default"),
    ("critical", {"vibration": False}, "default"),  # iOS vibrates with the sound; nothing to switch off
    ("critical", {"sound": False}, None),
    ("high", {"sound": False, "vibration": False}, None),
    ("normal", None, None),  # only urgent notifications ring, whatever the preference
    ("low", {"sound": True}, None),
])
def test_apns_sound_rings_for_urgent_notifications_of_users_who_keep_it_on(priority, preferences, sound):
    _, payload = render_apns(job(priority=priority, presentation=preferences), IPHONE, "com.example.app")
    assert payload["aps"].get("sound") == sound
    # Muted, a critical notification still breaks through Focus.
    assert payload["aps"].get("interruption-level") == ("time-sensitive" if priority == "critical" else None)


def test_apns_payload_of_a_user_without_preferences_is_that_of_the_defaults():
    assert render_apns(job(priority="critical", presentation=None), IPHONE, "com.example.app") == \
        render_apns(job(priority="critical", presentation={}), IPHONE, "com.example.app")


def test_apns_id_is_stable_per_job_and_device():
    other = {**IPHONE, "device_id": "d-ipad"}
    first = render_apns(job(), IPHONE, "t")[0]["apns-id"]
    assert render_apns(job(), IPHONE, "t")[0]["apns-id"] == first
    assert render_apns(job(), other, "t")[0]["apns-id"] != first
    assert render_apns(job(revision=1, job_id="n-1:u-1:push:1"), IPHONE, "t")[0]["apns-id"] != first
    assert uuid.UUID(first).version == 5


def test_collapse_id_is_cut_to_64_bytes_on_a_character_boundary():
    assert collapse_id("é" * 40) == "é" * 32
    assert collapse_id("a" * 63 + "é") == "a" * 63
    assert collapse_id("short") == "short"
    assert "apns-collapse-id" not in render_apns(job(collapse_key=""), IPHONE, "t")[0]


@pytest.mark.parametrize("body", ["x" * 5000, "ж" * 3000, '"\\' * 3000, "😀" * 2000])
def test_a_large_body_is_cut_to_fit_4096_bytes(body):
    _, payload = render_apns(job(body=body, payload={"k": "v" * 100}), IPHONE, "t")
    size = len(encode(payload))
    assert size <= MAX_PAYLOAD_BYTES and size > MAX_PAYLOAD_BYTES - 16
    cut = payload["aps"]["alert"]["body"]
    assert cut.endswith("…") and body.startswith(cut[:-1])
    assert payload["aps"]["alert"]["title"] == "Bob"


def test_apns_targets_ios_devices_with_a_token():
    devices = [IPHONE, {**IPHONE, "device_id": "d-2", "token": None},
               {"device_id": "d-3", "platform": "android", "token": "fcm", "web_push": None}]
    assert provider().targets(job(devices=devices)) == [IPHONE]


# -- APNs: outcomes and the provider token ---------------------------------------------------------


@pytest.mark.parametrize(("status", "reason", "expected"), [
    (200, None, Result("sent", provider_id="id-1")),
    (410, "Unregistered", Result("permanent", "410 Unregistered", state="token_invalid")),
    (410, "ExpiredToken", Result("permanent", "410 ExpiredToken", state="token_invalid")),
    (400, "BadDeviceToken", Result("permanent", "400 BadDeviceToken", state="token_invalid")),
    (429, "TooManyRequests", Result("transient", "429 TooManyRequests", retry_after=7.0)),
    (500, "InternalServerError", Result("transient", "500 InternalServerError", retry_after=7.0)),
    (503, "ServiceUnavailable", Result("transient", "503 ServiceUnavailable", retry_after=7.0)),
    (403, "ExpiredProviderToken", Result("transient", "403 ExpiredProviderToken")),
    (403, "InvalidProviderToken", Result("permanent", "403 InvalidProviderToken", state="failed")),
    (400, "BadCollapseId", Result("permanent", "400 BadCollapseId", state="failed")),
    (413, "PayloadTooLarge", Result("permanent", "413 PayloadTooLarge", state="failed")),
])
def test_apns_responses_map_to_outcomes(status, reason, expected):
    assert response_result(status, reason, 7.0, "id-1") == expected


KEY = ec.generate_private_key(ec.SECP256R1())
PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption()).decode()
ENV = {"APNS_KEY_ID": "KEY1", "APNS_TEAM_ID": "TEAM1", "APNS_BUNDLE_ID": "com.example.app", "APNS_PRIVATE_KEY": PEM}


def provider(clock=lambda: NOW.timestamp()) -> ApnsProvider:
    return ApnsProvider(key_id="KEY1", team_id="TEAM1", bundle_id="com.example.app", private_key=KEY, clock=clock)


def test_provider_token_is_an_es256_jwt_cached_for_50_minutes():
    now = [NOW.timestamp()]
    apns = provider(clock=lambda: now[0])
    token = apns.provider_token()
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "KEY1", "typ": "JWT"}
    assert jwt.decode(token, KEY.public_key(), algorithms=["ES256"], options={"verify_iat": False}) == {
        "iss": "TEAM1", "iat": int(NOW.timestamp())}
    now[0] += TOKEN_REFRESH_S - 1
    assert apns.provider_token() == token
    now[0] += 1
    fresh = apns.provider_token()
    assert fresh != token and jwt.decode(fresh, options={"verify_signature": False})["iat"] == int(now[0])


def test_an_expired_token_is_refreshed_once_per_batch():
    now = [NOW.timestamp()]
    apns = provider(clock=lambda: now[0])
    old = apns.provider_token()
    now[0] += 60
    apns.expire(old)
    fresh = apns.provider_token()
    apns.expire(old)  # a second 403 for the old token from the same batch
    assert fresh != old and apns.provider_token() == fresh


def test_apns_from_env():
    made = ApnsProvider.from_env(ENV)
    assert (made.url, made.key_id, made.team_id, made.bundle_id, made.ca_file) == (
        "https://api.push.apple.com", "KEY1", "TEAM1", "com.example.app", None)
    # A PEM pasted into a .env file with literal "\n" still loads.
    assert ApnsProvider.from_env({**ENV, "APNS_PRIVATE_KEY": PEM.replace("\n", "\\n")}).private_key


def test_apns_from_env_reads_a_key_file(tmp_path):
    (tmp_path / "key.p8").write_text(PEM)
    env = {**{k: v for k, v in ENV.items() if k != "APNS_PRIVATE_KEY"}, "APNS_PRIVATE_KEY_FILE":
           str(tmp_path / "key.p8"), "APNS_URL": "https://127.0.0.1:9/"}
    assert ApnsProvider.from_env(env).url == "https://127.0.0.1:9"


@pytest.mark.parametrize(("env", "message"), [
    ({**ENV, "APNS_KEY_ID": ""}, "APNS_KEY_ID is not set"),
    ({k: v for k, v in ENV.items() if k != "APNS_TEAM_ID"}, "APNS_TEAM_ID is not set"),
    ({k: v for k, v in ENV.items() if k != "APNS_PRIVATE_KEY"}, "APNS_PRIVATE_KEY .* or APNS_PRIVATE_KEY_FILE"),
    ({**ENV, "APNS_PRIVATE_KEY": "not a key"}, "APNS_PRIVATE_KEY is not a PEM private key"),
    ({**{k: v for k, v in ENV.items() if k != "APNS_PRIVATE_KEY"}, "APNS_PRIVATE_KEY_FILE": "/nonexistent.p8"},
     "APNS_PRIVATE_KEY_FILE cannot be read"),
])
def test_apns_from_env_names_what_is_missing(env, message):
    with pytest.raises(ValueError, match=message):
        ApnsProvider.from_env(env)


def test_the_payload_is_compact_utf8_json():
    _, payload = render_apns(job(body="Привет"), IPHONE, "t")
    assert encode(payload) == json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    assert "Привет".encode() in encode(payload)
