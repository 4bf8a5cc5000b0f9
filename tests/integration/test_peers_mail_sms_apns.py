"""The APNs, SMTP and AWS (SES/SNS) peers, each driven by the real client a sender would use."""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import time
import uuid
from email.message import EmailMessage

import aiosmtplib
import botocore.exceptions
import httpx
import jwt
import pytest

from peers.apns import ApnsService
from peers.aws import MotoServer
from peers.smtp import SmtpServer

# -- APNs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apns():
    with ApnsService() as service:
        yield service


@pytest.fixture(scope="module")
def h2_client(apns):
    tls = ssl.create_default_context(cafile=apns.ca_pem_path)  # verify against the peer's CA
    with httpx.Client(http2=True, verify=tls, base_url=apns.url, timeout=10) as client:
        yield client


def provider_token(apns, **overrides) -> str:
    claims = {"iss": apns.team_id, "iat": int(time.time()), **overrides}
    return jwt.encode(claims, apns.private_key_pem, algorithm="ES256", headers={"kid": apns.key_id})


def push(client, apns, token: str, payload: dict, jwt_token: str | None = None, **headers) -> httpx.Response:
    base = {"authorization": f"bearer {jwt_token or provider_token(apns)}", "apns-topic": apns.bundle_id,
            "apns-push-type": "alert"}
    return client.post(f"/3/device/{token}", content=json.dumps(payload).encode(), headers={**base, **headers})


def test_apns_accepts_a_signed_push_over_http2_and_records_it(apns, h2_client):
    token, apns_id = secrets.token_hex(32), str(uuid.uuid4())
    payload = {"aps": {"alert": {"title": "Bob", "body": "Lunch?"}, "sound": "default"}, "nid": "n-1"}
    before = len(apns.received)

    response = push(h2_client, apns, token, payload, **{"apns-id": apns_id, "apns-priority": "10",
                                                         "apns-expiration": "0", "apns-collapse-id": "n-1"})

    assert response.http_version == "HTTP/2"
    assert response.status_code == 200, response.text
    assert response.headers["apns-id"] == apns_id
    record = apns.wait_for(before + 1)[-1]
    assert record["token"] == token
    assert record["payload"] == payload
    assert {k: record["headers"][k] for k in ("apns-topic", "apns-push-type", "apns-id", "apns-priority",
                                              "apns-expiration", "apns-collapse-id")} == {
        "apns-topic": apns.bundle_id, "apns-push-type": "alert", "apns-id": apns_id, "apns-priority": "10",
        "apns-expiration": "0", "apns-collapse-id": "n-1"}
    assert record["headers"]["authorization"].startswith("bearer ")


def test_apns_rejects_a_token_signed_with_another_key(apns, h2_client):
    from cryptography.hazmat.primitives.asymmetric import ec

    forged = jwt.encode({"iss": apns.team_id, "iat": int(time.time())}, ec.generate_private_key(ec.SECP256R1()),
                        algorithm="ES256", headers={"kid": apns.key_id})
    response = push(h2_client, apns, secrets.token_hex(32), {"aps": {"alert": "hi"}}, jwt_token=forged)
    assert (response.status_code, response.json()) == (403, {"reason": "InvalidProviderToken"})


def test_apns_rejects_an_expired_provider_token(apns, h2_client):
    stale = provider_token(apns, iat=int(time.time()) - 3700)
    response = push(h2_client, apns, secrets.token_hex(32), {"aps": {"alert": "hi"}}, jwt_token=stale)
    assert (response.status_code, response.json()) == (403, {"reason": "ExpiredProviderToken"})


def test_apns_answers_410_for_an_unregistered_device(apns, h2_client):
    token = secrets.token_hex(32)
    apns.unregister(token)
    response = push(h2_client, apns, token, {"aps": {"alert": "hi"}})
    assert response.status_code == 410
    body = response.json()
    assert body["reason"] == "Unregistered"
    assert abs(body["timestamp"] - time.time() * 1000) < 60_000


@pytest.mark.parametrize(("headers", "payload", "status", "reason"), [
    ({"apns-collapse-id": "x" * 65}, {"aps": {}}, 400, "BadCollapseId"),
    ({}, {"aps": {"alert": "x" * 4100}}, 413, "PayloadTooLarge"),
    ({"apns-topic": "com.other.app"}, {"aps": {}}, 400, "TopicDisallowed"),
    ({"apns-push-type": "voice"}, {"aps": {}}, 400, "InvalidPushType"),
])
def test_apns_refuses_malformed_requests(apns, h2_client, headers, payload, status, reason):
    response = push(h2_client, apns, secrets.token_hex(32), payload, **headers)
    assert (response.status_code, response.json()["reason"]) == (status, reason)


def test_apns_bad_device_token_and_injected_failures(apns, h2_client):
    response = push(h2_client, apns, "not-a-token", {"aps": {}})
    assert (response.status_code, response.json()) == (400, {"reason": "BadDeviceToken"})

    token = secrets.token_hex(32)
    apns.fail(token, 429, "TooManyRequests", times=1)
    apns.fail(token, 503, "ServiceUnavailable", times=2)  # replaces the 429 rule
    statuses = [push(h2_client, apns, token, {"aps": {}}).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert [r["reason"] for r in apns.rejected if r["token"] == token] == ["ServiceUnavailable"] * 2


# -- SMTP -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as server:
        yield server


def mail(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "NotifyFlow <noreply@notifyflow.test>"
    message["To"] = to
    message["Subject"] = "Bob sent you a message"
    message["List-Unsubscribe"] = "<https://notifyflow.test/unsubscribe/abc>, <mailto:unsub@notifyflow.test>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content("Lunch?")
    message.add_alternative("<p>Lunch?</p>", subtype="html")
    return message


def send(smtp, message: EmailMessage):
    return asyncio.run(aiosmtplib.send(message, hostname=smtp.host, port=smtp.port, start_tls=False, timeout=10))


def test_smtp_records_a_multipart_message(smtp):
    before = len(smtp.messages)
    send(smtp, mail("alice@example.com"))

    record = smtp.wait_for(before + 1)[-1]
    assert record["mail_from"] == "noreply@notifyflow.test"
    assert record["rcpt_tos"] == ["alice@example.com"]
    message = record["message"]
    assert message["Subject"] == "Bob sent you a message"
    # The header is longer than 78 characters, so the sender folds it right after the colon and the
    # stdlib parser keeps the fold's leading space; the value itself arrives intact.
    assert message["List-Unsubscribe"].strip() == (
        "<https://notifyflow.test/unsubscribe/abc>, <mailto:unsub@notifyflow.test>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    assert message.get_body(("plain",)).get_content().strip() == "Lunch?"
    assert message.get_body(("html",)).get_content().strip() == "<p>Lunch?</p>"


def test_smtp_bounce_is_a_550_refusal(smtp):
    smtp.bounce("gone@example.com")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        send(smtp, mail("gone@example.com"))
    [recipient] = refused.value.recipients
    assert (recipient.recipient, recipient.code) == ("gone@example.com", 550)


def test_smtp_defer_answers_451_then_accepts(smtp):
    smtp.defer("busy@example.com", times=1)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        send(smtp, mail("busy@example.com"))
    assert refused.value.recipients[0].code == 451

    before = len(smtp.messages)
    send(smtp, mail("busy@example.com"))
    assert smtp.wait_for(before + 1)[-1]["rcpt_tos"] == ["busy@example.com"]


# -- SES and SNS (moto server) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws():
    with MotoServer() as server:
        yield server


def test_ses_send_from_a_verified_identity_is_recorded(aws):
    aws.verify_email_identity("noreply@notifyflow.test")
    aws.client("sesv2").send_email(
        FromEmailAddress="noreply@notifyflow.test",
        Destination={"ToAddresses": ["alice@example.com"]},
        Content={"Simple": {"Subject": {"Data": "Bob sent you a message"},
                            "Body": {"Text": {"Data": "Lunch?"}, "Html": {"Data": "<p>Lunch?</p>"}}}})

    [sent] = [m for m in aws.sent_emails() if m.get("subject") == "Bob sent you a message"]
    assert sent["source"] == "noreply@notifyflow.test"
    assert sent["destinations"] == {"ToAddresses": ["alice@example.com"]}
    assert sent["body"] == "<p>Lunch?</p>"  # moto keeps the Html part when both are given


def test_ses_refuses_an_unverified_sender(aws):
    with pytest.raises(botocore.exceptions.ClientError) as error:
        aws.client("sesv2").send_email(
            FromEmailAddress="stranger@elsewhere.test", Destination={"ToAddresses": ["alice@example.com"]},
            Content={"Simple": {"Subject": {"Data": "hi"}, "Body": {"Text": {"Data": "hi"}}}})
    assert error.value.response["Error"]["Code"] == "MessageRejected"


def test_sns_sms_publish_is_recorded(aws):
    message_id = aws.client("sns").publish(PhoneNumber="+15555550100", Message="Your code is 123456")["MessageId"]
    assert {"message_id": message_id, "phone_number": "+15555550100",
            "message": "Your code is 123456"} in aws.sent_sms()


def test_reset_forgets_sends_and_identities(aws):
    aws.client("sns").publish(PhoneNumber="+15555550100", Message="x")
    aws.reset()
    assert aws.sent_sms() == [] and aws.sent_emails() == []
    assert aws.client("sesv2").list_email_identities()["EmailIdentities"] == []
