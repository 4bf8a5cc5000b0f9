"""sinks/email.py and its message and transports without a network: the rendered message as a
receiver parses it, the signed unsubscribe links, what SMTP replies and SES errors mean,
configuration, and the provider's suppression handling over a recording transport."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import aiosmtplib
import botocore.exceptions
import pytest

from kernel.topics import codec_for
from kernel.unsubscribe import DEV_SECRET, Unsubscribe, UnsubscribeError, verify
from sinks.email import DEFAULT_FROM, DEFAULT_UNSUBSCRIBE_URL, EmailProvider
from sinks.email_message import message_id, render
from sinks.email_transports import Mail, SmtpTransport, ses_result, smtp_result
from sinks.engine import Result, Send

TOPIC = "notify.outbox.email.normal"
SENDER = "NotifyFlow <notifications@notifyflow.test>"
BASE = "https://notifyflow.test/unsubscribe"
CREATED = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def job(**fields) -> dict:
    minimal = {"job_id": "n-1:u-1:email:0", "notification_id": "n-1", "revision": 0, "request_ids": ["n-1"],
               "user_id": "u-1", "tenant": "acme", "channel": "email", "lane": "normal", "kind": "single",
               "priority": "normal", "type": "info", "category": "ci", "title": "Build #42 failed",
               "body": "3 tests failed", "html_body": "<p>3 tests <b>failed</b></p>", "locale": "en",
               "collapse_key": "n-1", "created_at": CREATED, "address": "ana@example.com", **fields}
    codec = codec_for(TOPIC)
    return codec.decode(codec.encode(minimal))


def received(message) -> email.message.EmailMessage:
    """The message as a receiver parses the bytes we send."""
    data = message.as_bytes()
    assert data.isascii()  # 7-bit clean for any SMTP server
    return email.message_from_bytes(data, policy=email.policy.default)


def content(mail, kind: str) -> str:
    """A part's text; lines end in CRLF on the wire, and a parser keeps them."""
    return mail.get_body((kind,)).get_content().replace("\r\n", "\n")


EXPIRES = int(CREATED.timestamp()) + 90 * 86400  # links work for 90 days after the email


def token(user="u-1", category="ci", notification="n-1", secret="dev-secret", tenant="acme") -> str:
    """The signature of a link for the test job's user (acme's) unless `tenant` says otherwise."""
    return Unsubscribe(user, category, notification, EXPIRES, tenant).token(secret)


def test_the_message_a_receiver_gets():
    mail = received(render(job(deep_link="https://ci.example.com/42"), SENDER, BASE, secret="dev-secret"))

    t = token()
    assert {name: str(mail[name]) for name in ("From", "To", "Subject", "Date", "Message-ID", "X-Notifyflow-Job",
                                               "List-Unsubscribe", "List-Unsubscribe-Post", "Auto-Submitted")} == {
        "From": SENDER, "To": "ana@example.com", "Subject": "Build #42 failed",
        "Date": "Tue, 04 Mar 2025 05:06:07 +0000", "Message-ID": "<n-1%3Au-1%3Aemail%3A0@notifyflow>",
        "X-Notifyflow-Job": "n-1:u-1:email:0",
        "List-Unsubscribe": f"<{BASE}?u=u-1&g=acme&c=ci&n=n-1&e={EXPIRES}&t={t}>, "
                            f"<mailto:unsubscribe@notifyflow.test?subject=unsubscribe%20u-1%20acme%20ci%20n-1%20"
                            f"{EXPIRES}%20{t}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click", "Auto-Submitted": "auto-generated"}
    assert mail.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
    assert content(mail, "plain") == (
        f"3 tests failed\n\nhttps://ci.example.com/42\n\n-- \n"
        f"Unsubscribe: {BASE}?u=u-1&g=acme&c=ci&n=n-1&e={EXPIRES}&t={t}\n")
    assert content(mail, "html") == (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Build #42 failed</title></head>\n'
        '<body style="margin:0;padding:24px;font-family:Arial,Helvetica,sans-serif;color:#1f2328">\n'
        "<div><p>3 tests <b>failed</b></p></div>\n"
        '<p><a href="https://ci.example.com/42">https://ci.example.com/42</a></p>\n'
        f'<p style="margin-top:32px;font-size:12px;color:#6e7781"><a href="{BASE}?u=u-1&amp;g=acme&amp;c=ci&amp;'
        f'n=n-1&amp;e={EXPIRES}&amp;t={t}" '
        'style="color:#6e7781">Unsubscribe</a></p>\n</body>\n</html>\n')


def test_an_https_image_and_link_actions_are_shown_and_everything_added_is_escaped():
    actions = [{"id": "open", "title": "Open <build>", "action": "https://ci.example.com/42?a=1&b=2", "icon": None},
               {"id": "reply", "title": "Reply", "action": "reply", "icon": None},
               {"id": "app", "title": "In app", "action": "acme://builds/42", "icon": None}]
    mail = received(render(job(title='Build "x" <failed>', image_url="https://img.example.com/a.png?s=1&t=2",
                               actions=actions), SENDER, BASE))
    html = content(mail, "html")
    assert '<title>Build &quot;x&quot; &lt;failed&gt;</title>' in html
    assert '<p><img src="https://img.example.com/a.png?s=1&amp;t=2" alt=""' in html
    assert '<a href="https://ci.example.com/42?a=1&amp;b=2" style="' in html and ">Open &lt;build&gt;</a>" in html
    assert "Reply" not in html and "acme://" not in html  # only the app can act on these
    assert "Open <build>: https://ci.example.com/42?a=1&b=2\n" in content(mail, "plain")


@pytest.mark.parametrize("image", ["http://img.example.com/a.png", "data:image/png;base64,AAAA", "//img.example.com/a"])
def test_an_image_that_is_not_https_is_left_out(image):
    html = content(received(render(job(image_url=image), SENDER, BASE)), "html")
    assert "<img" not in html


def test_a_digest_lists_its_items_once():
    items = [{"notification_id": "a", "category": "ci", "title": "Build failed", "body": "3 tests",
              "created_at": CREATED},
             {"notification_id": "b", "category": "chat", "title": "Bob mentioned you", "body": "",
              "created_at": CREATED}]
    listed = "• Build failed: 3 tests\n• Bob mentioned you"
    # A producer that does not list them gets them after its body ...
    text = received(render(job(kind="digest", body="While you were away:", digest_items=items), SENDER, BASE))
    assert content(text, "plain").startswith(f"While you were away:\n\n{listed}\n\n-- \n")
    # ... and the digest flow, whose body is already the list, does not get them twice.
    text = received(render(job(kind="digest", body=listed, digest_items=items), SENDER, BASE))
    assert content(text, "plain").startswith(f"{listed}\n\n-- \n")


def test_long_and_non_ascii_headers_arrive_intact():
    title = "Réunion d'équipe déplacée à jeudi, salle Ångström " * 3
    user, category = "user-8f3e2c1a-0000-4a4a-9b9b-123456789abc", "security-alerts"
    mail = received(render(job(title=title + "\nBcc: eve@example.com", user_id=user, category=category,
                               job_id=f"n-{'x' * 40}:{user}:email:0", locale="fr"), SENDER, BASE))
    assert mail["Subject"] == " ".join(f"{title} Bcc: eve@example.com".split())  # a line break cannot inject
    assert mail["Bcc"] is None
    assert mail["X-Notifyflow-Job"] == f"n-{'x' * 40}:{user}:email:0"
    https, mailto = mail["List-Unsubscribe"].split(", ")
    signature = token(user, category, secret=DEV_SECRET)
    assert https == f"<{BASE}?u={user}&g=acme&c={category}&n=n-1&e={EXPIRES}&t={signature}>"
    assert mailto.startswith("<mailto:unsubscribe@notifyflow.test?subject=unsubscribe%20")
    assert "Se désabonner: https://" in content(mail, "plain")


def test_message_id_is_stable_and_valid_for_any_job_id():
    assert message_id("n-1:u-1:email:0") == "<n-1%3Au-1%3Aemail%3A0@notifyflow>"
    for job_id in ("n.1:u..x:email:3", "n-1:ü ser%:email:0"):
        header = received(render(job(job_id=job_id), SENDER, BASE))["Message-ID"]
        assert header == message_id(job_id) and not header.defects


def test_unsubscribe_links_cannot_be_forged_altered_or_used_after_they_expire():
    link = {"u": "u-1", "g": "acme", "c": "ci", "n": "n-1", "e": str(EXPIRES), "t": token()}
    assert verify(link, "dev-secret", CREATED) == Unsubscribe("u-1", "ci", "n-1", EXPIRES, "acme")
    for altered in ({"u": "u-2"}, {"g": "globex"}, {"g": ""}, {"c": "marketing"}, {"n": "n-2"},
                    {"e": str(EXPIRES + 86400)}, {"t": "ünïcode"}):
        with pytest.raises(UnsubscribeError, match="signature") as refused:
            verify({**link, **altered}, "dev-secret", CREATED)
        assert refused.value.status == 403
    with pytest.raises(UnsubscribeError, match="signature"):
        verify(link, "other-secret", CREATED)
    with pytest.raises(UnsubscribeError, match="expired") as expired:
        verify(link, "dev-secret", datetime.fromtimestamp(EXPIRES + 1, UTC))
    assert expired.value.status == 403
    with pytest.raises(UnsubscribeError, match="lacks t") as malformed:
        verify({**link, "t": ""}, "dev-secret", CREATED)
    assert malformed.value.status == 400
    # Field boundaries are part of what is signed: ("a b", "c") is not ("a", "b c").
    assert token("a b", "c") != token("a", "b c")


def test_a_default_tenant_link_is_signed_as_links_were_before_tenants():
    # Links already in mailboxes name no tenant: they are the default tenant's, and still verify.
    before = hmac.new(b"dev-secret", json.dumps(["u-1", "ci", "n-1", EXPIRES]).encode(), hashlib.sha256).digest()
    old_link = {"u": "u-1", "c": "ci", "n": "n-1", "e": str(EXPIRES),
                "t": base64.urlsafe_b64encode(before[:16]).rstrip(b"=").decode()}
    assert Unsubscribe("u-1", "ci", "n-1", EXPIRES).params("dev-secret") == old_link
    assert verify(old_link, "dev-secret", CREATED) == Unsubscribe("u-1", "ci", "n-1", EXPIRES, "default")
    with pytest.raises(UnsubscribeError, match="signature"):  # not acme's u-1, whose link must name acme
        verify({**old_link, "t": token()}, "dev-secret", CREATED)


def test_the_unsubscribe_link_carries_awkward_ids_safely():
    user, category = "ana&c=all", "ci/builds"
    mail = received(render(job(user_id=user, category=category), SENDER, BASE + "?lang=en"))
    url = mail["List-Unsubscribe"].split(", ")[0][1:-1]
    assert parse_qs(urlsplit(url).query) == {"lang": ["en"], "u": [user], "g": ["acme"], "c": [category], "n": ["n-1"],
                                             "e": [str(EXPIRES)], "t": [token(user, category, secret=DEV_SECRET)]}


def provider(transport=None, suppressions=None) -> EmailProvider:
    return EmailProvider(transport or Recording(), suppressions or MemorySuppressions(), sender=SENDER,
                         unsubscribe_url=BASE)


def test_targets_are_the_address_or_nothing():
    assert provider().targets(job()) == [None]
    assert provider().targets(job(address=None)) == []


# -- outcomes --------------------------------------------------------------------------------------


def refused(code: int, text: str) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(code, text, "ana@example.com")])


@pytest.mark.parametrize(("exc", "expected"), [
    (refused(451, "4.3.0 try again later"), Result("transient", "451 4.3.0 try again later")),
    (refused(421, "service shutting down"), Result("transient", "421 service shutting down")),
    (refused(550, "5.1.1 user unknown"), Result("permanent", "550 5.1.1 user unknown", state="bounced")),
    (refused(553, "mailbox name not allowed"), Result("permanent", "553 mailbox name not allowed", state="bounced")),
    # A policy refusal says nothing about the mailbox: fail this message, keep the address.
    (refused(550, "5.7.1 message rejected as spam"), Result("permanent", "550 5.7.1 message rejected as spam")),
    (refused(552, "mailbox full"), Result("permanent", "552 mailbox full")),
    (aiosmtplib.SMTPSenderRefused(550, "5.1.0 sender rejected", "x@y"),
     Result("permanent", "550 5.1.0 sender rejected")),
    (aiosmtplib.SMTPDataError(554, "5.6.0 message refused"), Result("permanent", "554 5.6.0 message refused")),
    (aiosmtplib.SMTPDataError(452, "4.3.1 insufficient storage"),
     Result("transient", "452 4.3.1 insufficient storage")),
    (aiosmtplib.SMTPConnectError("Error connecting to 127.0.0.1 on port 1"),
     Result("transient", "SMTPConnectError: Error connecting to 127.0.0.1 on port 1")),
    (aiosmtplib.SMTPServerDisconnected("gone"), Result("transient", "SMTPServerDisconnected: gone")),
    (aiosmtplib.SMTPReadTimeoutError("timed out"), Result("transient", "SMTPReadTimeoutError: timed out")),
    (ValueError("Address 'a b@x' contains characters not permitted"),
     Result("permanent", "address cannot be sent over SMTP: Address 'a b@x' contains characters not permitted")),
])
def test_smtp_errors(exc, expected):
    assert smtp_result(exc) == expected


def client_error(code: str, status: int, message: str = "nope") -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message},
                                            "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail")


@pytest.mark.parametrize(("exc", "expected"), [
    (client_error("MessageRejected", 400, "Email address not verified x@y"),
     Result("permanent", "MessageRejected: Email address not verified x@y")),
    (client_error("TooManyRequestsException", 429), Result("transient", "TooManyRequestsException: nope")),
    (client_error("Throttling", 400, "Maximum sending rate exceeded."),
     Result("transient", "Throttling: Maximum sending rate exceeded.")),
    (client_error("InternalFailure", 500), Result("transient", "InternalFailure: nope")),
    (client_error("SendingPausedException", 400), Result("permanent", "SendingPausedException: nope")),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
     Result("transient", 'EndpointConnectionError: Could not connect to the endpoint URL: "http://127.0.0.1:1"')),
])
def test_ses_errors(exc, expected):
    assert ses_result(exc) == expected


# -- configuration ---------------------------------------------------------------------------------


def test_from_env_defaults_to_smtp_and_needs_its_url():
    with pytest.raises(ValueError, match="SMTP_URL is not set"):
        EmailProvider.from_env({}, MemorySuppressions())
    with pytest.raises(ValueError, match="EMAIL_TRANSPORT must be smtp or ses, not 'pigeon'"):
        EmailProvider.from_env({"EMAIL_TRANSPORT": "pigeon"}, MemorySuppressions())
    with pytest.raises(ValueError, match="EMAIL_FROM must be an address"):
        EmailProvider.from_env({"SMTP_URL": "smtp://h", "EMAIL_FROM": "nobody"}, MemorySuppressions())
    with pytest.raises(ValueError, match="UNSUBSCRIBE_URL must be an https URL"):
        EmailProvider.from_env({"SMTP_URL": "smtp://h", "UNSUBSCRIBE_URL": "http://x/u"}, MemorySuppressions())

    smtp = EmailProvider.from_env({"SMTP_URL": "smtp://h:2525"}, MemorySuppressions())
    assert (smtp.name, smtp.sender, smtp.unsubscribe_url) == ("smtp", DEFAULT_FROM, DEFAULT_UNSUBSCRIBE_URL)
    ses = EmailProvider.from_env({"EMAIL_TRANSPORT": "ses", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
                                 MemorySuppressions())
    assert ses.name == "ses" and ses.transport.client.meta.region_name == "us-east-1"


def test_smtp_urls():
    assert SmtpTransport.from_url("smtp://mailer:p%40ss@mail.example.com:587?starttls=1") == SmtpTransport(
        "mail.example.com", 587, "mailer", "p@ss", start_tls=True)
    assert SmtpTransport.from_url("smtp://127.0.0.1") == SmtpTransport("127.0.0.1", 25)
    assert SmtpTransport.from_url("smtps://u:p@mail.example.com") == SmtpTransport(
        "mail.example.com", 465, "u", "p", use_tls=True)
    for bad in ("http://mail.example.com", "smtp://", "smtp://u:secret@h:port"):
        with pytest.raises(ValueError) as error:
            SmtpTransport.from_url(bad)
        assert "secret" not in str(error.value)


# -- the provider around its transport -------------------------------------------------------------


class Recording:
    name = "smtp"

    def __init__(self, answers: dict[str, Result] | None = None) -> None:
        self.answers, self.mails = answers or {}, []

    async def deliver(self, mails: list[Mail]) -> list[Result]:
        self.mails += mails
        return [self.answers.get(mail.to, Result("sent", provider_id=mail.message_id)) for mail in mails]


class MemorySuppressions:
    def __init__(self, *addresses: str, broken: bool = False) -> None:
        self.rows = {address: "seeded" for address in addresses}
        self.broken = broken

    def suppressed(self, addresses: set[str]) -> set[str]:
        if self.broken:
            raise ConnectionError("database is down")
        return addresses & set(self.rows)

    def suppress(self, address: str, reason: str) -> None:
        self.rows.setdefault(address, reason)


def test_suppressed_addresses_are_skipped_and_hard_bounces_suppressed():
    bounce = Result("permanent", "550 5.1.1 user unknown", state="bounced")
    transport = Recording({"Gone@Example.com": bounce})
    suppressions = MemorySuppressions("old@example.com")
    jobs = [job(address="OLD@example.com"), job(address="ana@example.com", job_id="n-2:u-1:email:0"),
            job(address="Gone@Example.com")]

    results = asyncio.run(provider(transport, suppressions).send([Send(j) for j in jobs]))

    assert results == [Result("permanent", "address suppressed after a hard bounce", state="bounced"),
                       Result("sent", provider_id="<n-2%3Au-1%3Aemail%3A0@notifyflow>"), bounce]
    assert [mail.to for mail in transport.mails] == ["ana@example.com", "Gone@Example.com"]
    assert transport.mails[0].sender == "notifications@notifyflow.test"
    assert suppressions.rows == {"old@example.com": "seeded", "gone@example.com": "550 5.1.1 user unknown"}


def test_an_unreachable_suppression_list_is_transient_not_a_crash():
    transport = Recording()
    results = asyncio.run(provider(transport, MemorySuppressions(broken=True)).send([Send(job()), Send(job())]))
    assert results == [Result("transient", "suppression list unavailable: database is down")] * 2
    assert transport.mails == []
