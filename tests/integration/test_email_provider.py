"""The email provider through the delivery engine, with real Redis claims, against the local SMTP
server (aiosmtpd) and the local SES (moto): the exact message a receiver gets, a deferral retried,
a hard bounce that suppresses the address, a replay that sends nothing, and SES's refusals."""

from __future__ import annotations

import email
import email.policy
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import psycopg
import pytest

from connectors import redis
from kernel.topics import codec_for
from kernel.unsubscribe import Unsubscribe
from notifyflow.stack import free_port
from peers.aws import MotoServer
from peers.smtp import SmtpServer
from sinks.circuit import Breakers
from sinks.claims import RedisClaims
from sinks.email import EmailProvider
from sinks.email_suppressions import PostgresSuppressions
from sinks.engine import Delivery
from sinks.retry import RetryPolicy

TOPIC = "notify.outbox.email.normal"
SENDER = "NotifyFlow <notifications@notifyflow.test>"
SECRET = "test-unsubscribe-secret"
UNSUBSCRIBE = "https://notifyflow.test/unsubscribe"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def job(address: str, **fields) -> dict:
    notification_id, user = unique("n"), fields.pop("user_id", unique("ana"))
    minimal = {"job_id": f"{notification_id}:{user}:email:0", "notification_id": notification_id, "revision": 0,
               "request_ids": [notification_id], "user_id": user, "tenant": "default", "channel": "email",
               "lane": "normal", "kind": "single", "priority": "normal", "type": "info", "category": "ci",
               "title": "Build #42 failed", "body": "3 tests failed", "html_body": "<p>3 tests <b>failed</b></p>",
               "locale": "en", "collapse_key": notification_id, "created_at": datetime.now(UTC), "address": address,
               **fields}
    codec = codec_for(TOPIC)
    return codec.decode(codec.encode(minimal))


def delivery(stack, environ: dict[str, str]) -> Delivery:
    provider = EmailProvider.from_env({"EMAIL_FROM": SENDER, "UNSUBSCRIBE_URL": UNSUBSCRIBE,
                                       "UNSUBSCRIBE_SECRET": SECRET, **environ},
                                      PostgresSuppressions(stack.urls["DATABASE_URL"]))
    return Delivery(provider, RedisClaims(redis.client(stack.urls["REDIS_URL"])), Breakers(),
                    RetryPolicy(delays=(0.1, 0.2)))


def statuses(out: list) -> list[tuple]:
    return [(value["status"], value["attempt"], value["provider"], value["reason"])
            for topic, _, value in out if topic == "notify.status"]


def topics(out: list, user: str) -> list[str]:
    assert {key for _, key, _ in out} == {user.encode()}  # everything stays on the user's partition
    return [topic for topic, _, _ in out]


def addressed_to(smtp: SmtpServer, address: str) -> list[dict]:
    return [m for m in smtp.messages if m["rcpt_tos"] == [address]]


def text(message, kind: str) -> str:
    return message.get_body((kind,)).get_content().replace("\r\n", "\n")


# -- SMTP -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def smtp_delivery(stack, smtp):
    return delivery(stack, {"SMTP_URL": f"smtp://{smtp.host}:{smtp.port}"})


def test_sends_the_exact_message_once_and_a_replay_sends_nothing(stack, smtp, smtp_delivery):
    address = f"{unique('ana')}@example.com"
    sent = job(address, deep_link="https://ci.example.com/42", image_url="https://ci.example.com/badge.png",
               actions=[{"id": "logs", "title": "View logs", "action": "https://ci.example.com/42/logs", "icon": None},
                        {"id": "mute", "title": "Mute", "action": "mute", "icon": None}])
    user = sent["user_id"]

    out = smtp_delivery.process(smtp_delivery.new_state(), [sent], NOW)

    assert topics(out, user) == ["notify.status"]
    assert statuses(out) == [("sent", 1, "smtp", None)]
    assert out[0][2]["channel"] == "email" and out[0][2]["device_id"] is None
    [record] = addressed_to(smtp, address)
    assert record["mail_from"] == "notifications@notifyflow.test"
    unsubscribe = Unsubscribe.for_email(user, "ci", sent["notification_id"], sent["created_at"])
    message, token = record["message"], unsubscribe.token(SECRET)
    words = f"{sent['notification_id']}%20{unsubscribe.expires}"
    link = f"{UNSUBSCRIBE}?u={user}&c=ci&n={sent['notification_id']}&e={unsubscribe.expires}&t={token}"
    assert {name: str(message[name]).strip() for name in message.keys() if name != "Content-Type"} == {
        "From": SENDER, "To": address, "Subject": "Build #42 failed", "Date": format_datetime(sent["created_at"]),
        "Message-ID": f"<{sent['job_id'].replace(':', '%3A')}@notifyflow>", "X-Notifyflow-Job": sent["job_id"],
        "List-Unsubscribe": f"<{link}>, <mailto:unsubscribe@notifyflow.test?subject=unsubscribe%20{user}%20ci%20"
                            f"{words}%20{token}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click", "Auto-Submitted": "auto-generated",
        "MIME-Version": "1.0"}
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert text(message, "plain") == ("3 tests failed\n\nhttps://ci.example.com/42\n\n"
                                      "View logs: https://ci.example.com/42/logs\n\n"
                                      f"-- \nUnsubscribe: {link}\n")
    assert text(message, "html") == (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Build #42 failed</title></head>\n'
        '<body style="margin:0;padding:24px;font-family:Arial,Helvetica,sans-serif;color:#1f2328">\n'
        '<p><img src="https://ci.example.com/badge.png" alt="" style="max-width:100%;height:auto"></p>\n'
        "<div><p>3 tests <b>failed</b></p></div>\n"
        '<p><a href="https://ci.example.com/42">https://ci.example.com/42</a></p>\n'
        '<p><a href="https://ci.example.com/42/logs" style="display:inline-block;padding:8px 16px;'
        'margin:4px 8px 4px 0;border-radius:4px;background:#0969da;color:#ffffff;text-decoration:none">'
        "View logs</a></p>\n"
        f'<p style="margin-top:32px;font-size:12px;color:#6e7781"><a href="{link.replace("&", "&amp;")}" '
        'style="color:#6e7781">Unsubscribe</a></p>\n</body>\n</html>\n')

    # A crash and a replay: a fresh engine (fresh state) sees the same job; the claim stops it.
    replayed = delivery(stack, {"SMTP_URL": f"smtp://{smtp.host}:{smtp.port}"})
    out = replayed.process(replayed.new_state(), [sent], NOW + timedelta(minutes=5))
    assert statuses(out) == [("deduplicated", 1, "smtp", "already claimed")]
    assert len(addressed_to(smtp, address)) == 1


def test_a_451_deferral_is_retried_then_sent(smtp, smtp_delivery):
    address = f"{unique('busy')}@example.com"
    smtp.defer(address, times=1)
    sent, state = job(address), smtp_delivery.new_state()

    out = smtp_delivery.process(state, [sent], NOW)

    assert topics(out, sent["user_id"]) == ["notify.status"]
    assert statuses(out) == [("retried", 1, "smtp", "451 4.3.0 try again later")]
    assert addressed_to(smtp, address) == []
    assert NOW + timedelta(seconds=0.07) < smtp_delivery.due(state) < NOW + timedelta(seconds=0.13)

    out = smtp_delivery.release(state, NOW + timedelta(seconds=1))

    assert statuses(out) == [("sent", 2, "smtp", None)]
    [record] = addressed_to(smtp, address)
    assert record["message"]["X-Notifyflow-Job"] == sent["job_id"]
    assert smtp_delivery.is_empty(state)


def test_a_550_bounce_suppresses_the_address_and_falls_back(stack, smtp, smtp_delivery):
    address = f"{unique('Gone')}@Example.com"
    smtp.bounce(address)
    fallback = [{"channel": "sms", "after_seconds": 0, "address": "+15550100"}]
    bounced = job(address, fallback=fallback)
    user = bounced["user_id"]

    out = smtp_delivery.process(smtp_delivery.new_state(), [bounced], NOW)

    # A bounce is the address's fault, not the provider's: no retry, no dead letter, next channel.
    assert topics(out, user) == ["notify.status", "notify.outbox.sms.normal"]
    assert statuses(out) == [("bounced", 1, "smtp", "550 5.1.1 user unknown")]
    moved = out[1][2]
    assert (moved["channel"], moved["address"], moved["fallback"]) == ("sms", "+15550100", [])
    with psycopg.connect(stack.urls["DATABASE_URL"]) as db:
        rows = db.execute("SELECT address, reason FROM email_suppressions WHERE address = %s",
                          (address.lower(),)).fetchall()
    assert rows == [(address.lower(), "550 5.1.1 user unknown")]

    # The next notification to that address (spelt differently) is not even offered to the server.
    before = len(smtp.messages)
    out = smtp_delivery.process(smtp_delivery.new_state(), [job(address.lower(), user_id=user)], NOW)
    assert statuses(out) == [("bounced", 1, "smtp", "address suppressed after a hard bounce")]
    assert len(smtp.messages) == before


def test_a_batch_shares_connections_and_a_refusal_does_not_spoil_one(smtp, smtp_delivery):
    addresses = [f"{unique('team')}@example.com" for _ in range(10)]  # more mails than connections
    smtp.bounce(addresses[0])
    sent = [job(address) for address in addresses]

    out = smtp_delivery.process(smtp_delivery.new_state(), sent, NOW)

    # Mail 0 and mail 8 share a connection: after the refusal it is reset and still carries mail 8.
    assert statuses(out) == [("bounced", 1, "smtp", "550 5.1.1 user unknown")] + [("sent", 1, "smtp", None)] * 9
    assert [s["user_id"] for _, _, s in out] == [j["user_id"] for j in sent]
    assert [len(addressed_to(smtp, address)) for address in addresses] == [0] + [1] * 9


def test_an_unreachable_server_is_retried_then_dead_lettered(stack):
    engine = delivery(stack, {"SMTP_URL": f"smtp://127.0.0.1:{free_port()}"})
    sent, state = job(f"{unique('ana')}@example.com"), engine.new_state()

    out = engine.process(state, [sent], NOW)
    out += engine.release(state, NOW + timedelta(seconds=1))
    out += engine.release(state, NOW + timedelta(seconds=2))

    assert [s[:3] for s in statuses(out)] == [("retried", 1, "smtp"), ("retried", 2, "smtp"), ("failed", 3, "smtp")]
    assert all(s[3].startswith("SMTPConnectError") for s in statuses(out))
    assert topics(out, sent["user_id"]) == ["notify.status"] * 3 + ["notify.dlq"]
    dead = out[-1][2]
    assert (dead["stage"], dead["attempts"], codec_for(TOPIC).decode(dead["original"])["job_id"]) == (
        "deliver_email", 3, sent["job_id"])


# -- SES (moto) -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws():
    with MotoServer() as server:
        yield server


def ses_delivery(stack, aws, sender: str) -> Delivery:
    return delivery(stack, {"EMAIL_TRANSPORT": "ses", "AWS_ENDPOINT_URL": aws.endpoint_url, "EMAIL_FROM": sender,
                            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})


def test_ses_sends_the_rendered_message(stack, aws):
    aws.verify_email_identity("notifications@notifyflow.test")
    engine = ses_delivery(stack, aws, SENDER)
    address = f"{unique('ana')}@example.com"
    sent = job(address, title="Réunion déplacée", body="Jeudi, salle 4", html_body="<p>Jeudi, salle 4</p>",
               locale="fr")

    out = engine.process(engine.new_state(), [sent], NOW)

    assert topics(out, sent["user_id"]) == ["notify.status"]
    assert statuses(out) == [("sent", 1, "ses", None)]
    [record] = [m for m in aws.sent_emails() if sent["job_id"] in m.get("raw_data", "")]
    assert record["source"] == "notifications@notifyflow.test"
    assert set(record["destinations"]) == {address}
    message = email.message_from_string(record["raw_data"], policy=email.policy.default)
    unsubscribe = Unsubscribe.for_email(sent["user_id"], "ci", sent["notification_id"], sent["created_at"])
    link = f"{UNSUBSCRIBE}?u={sent['user_id']}&c=ci&n={sent['notification_id']}&e={unsubscribe.expires}" \
           f"&t={unsubscribe.token(SECRET)}"
    assert (message["Subject"], message["To"], message["X-Notifyflow-Job"], message["List-Unsubscribe-Post"]) == (
        "Réunion déplacée", address, sent["job_id"], "List-Unsubscribe=One-Click")
    assert message["List-Unsubscribe"].startswith(f"<{link}>, <mailto:")
    assert text(message, "plain") == f"Jeudi, salle 4\n\n-- \nSe désabonner: {link}\n"
    assert "<div><p>Jeudi, salle 4</p></div>" in text(message, "html")


def test_ses_refuses_an_unverified_sender(stack, aws):
    sender = f"alerts@{unique('unverified')}.test"
    engine = ses_delivery(stack, aws, sender)
    sent = job(f"{unique('ana')}@example.com")

    out = engine.process(engine.new_state(), [sent], NOW)

    # Retrying cannot verify the sender: failed at once, dead-lettered for a replay once it is fixed.
    assert topics(out, sent["user_id"]) == ["notify.status", "notify.dlq"]
    assert statuses(out) == [("failed", 1, "ses", f"MessageRejected: Did not have authority to send from email "
                                                  f"{sender}")]
    assert out[1][2]["stage"] == "deliver_email"
    assert not [m for m in aws.sent_emails() if sent["job_id"] in m.get("raw_data", "")]
