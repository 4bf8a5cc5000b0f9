"""Email: one multipart message per job, over SMTP (aiosmtplib) or Amazon SES v2 (boto3).

The message is rendered once by a pure function and handed to either transport as raw bytes, so
both send the same thing: a stable Message-ID (receivers can drop a replayed copy) and one-click
unsubscribe (RFC 8058) through a signed link nobody can forge for another user. A hard bounce
suppresses the address, and suppressed addresses are skipped before anything is sent: mailbox
providers punish senders who keep writing to addresses that do not exist.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import string
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from html import escape
from typing import Protocol
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import aiosmtplib
import boto3
import botocore.config
import botocore.exceptions

from connectors import postgres
from connectors.threads import PerThread
from sinks.engine import Result, Send

log = logging.getLogger(__name__)

DEFAULT_FROM = "notifications@notifyflow.local"
DEFAULT_UNSUBSCRIBE_URL = "https://notifyflow.local/unsubscribe"
# Only good for the local stack: anyone reading this file could forge unsubscribe links with it.
DEV_UNSUBSCRIBE_SECRET = "notifyflow-dev-unsubscribe-secret"
TIMEOUT_S = 10.0
# An SMTP connection carries one transaction at a time, so a batch is spread over a few of them.
SMTP_CONNECTIONS = 8
# Worth another try later: SES is shedding load, not refusing this message.
SES_THROTTLED = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
# Without an enhanced status code, the RCPT replies that mean "this mailbox does not exist".
HARD_BOUNCE_CODES = {550, 551, 553}

# 7-bit clean, so every SMTP server and SES take the bytes as they are. Headers set with `set_raw`
# are never refolded: Python 3.11's folder RFC 2047-encodes an over-long List-Unsubscribe URL
# (receivers then cannot use it) and drops the spaces between encoded words of long non-ASCII
# subjects, so `folded` folds those headers itself.
POLICY = SMTP.clone(cte_type="7bit", refold_source="none")
# RFC 5322 atext without "%" (the escape) and "." (dot-atoms may not start, end or repeat it).
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$&'*+-/=?^_`{|}~")
_UNSUBSCRIBE_LABEL = {"en": "Unsubscribe", "fr": "Se désabonner", "de": "Abbestellen",
                      "es": "Cancelar suscripción", "pt": "Cancelar inscrição", "it": "Annulla iscrizione"}


# -- rendering (pure) -----------------------------------------------------------------------------


def render(job: dict, sender: str, unsubscribe_base: str, *,
           secret: str = DEV_UNSUBSCRIBE_SECRET) -> EmailMessage:
    """The multipart/alternative message for one email job."""
    token = unsubscribe_token(job["user_id"], job["category"], secret)
    link = unsubscribe_link(unsubscribe_base, job["user_id"], job["category"], token)
    mailto = unsubscribe_mailto(sender, job["user_id"], job["category"], token)
    label = _UNSUBSCRIBE_LABEL.get(job["locale"].split("-")[0].lower(), _UNSUBSCRIBE_LABEL["en"])

    message = EmailMessage(policy=POLICY)
    message["From"] = sender
    message["To"] = job["address"]
    message.set_raw("Subject", folded("Subject", subject(job)))
    message["Date"] = format_datetime(job["created_at"])
    message.set_raw("Message-ID", message_id(job["job_id"]))
    message.set_raw("X-Notifyflow-Job", folded("X-Notifyflow-Job", job["job_id"]))
    message.set_raw("List-Unsubscribe", f"<{link}>,\n <{mailto}>")
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to notifications
    message.set_content(text_part(job, link, label))
    message.add_alternative(html_part(job, link, label), subtype="html")
    return message


def subject(job: dict) -> str:
    """The title on one line: a header cannot hold a line break."""
    return " ".join(job["title"].split())


def text_part(job: dict, unsubscribe: str, label: str) -> str:
    blocks = [job["body"].strip()] if job["body"].strip() else []
    # The digest flow already lists its items in the body; other producers may not.
    missing = [line for line in map(digest_line, job["digest_items"]) if line not in job["body"]]
    if missing:
        blocks.append("\n".join(missing))
    if job["deep_link"]:
        blocks.append(job["deep_link"])
    if links := action_links(job):
        blocks.append("\n".join(f"{title}: {url}" for title, url in links))
    blocks.append(f"-- \n{label}: {unsubscribe}")
    return "\n\n".join(blocks) + "\n"


def digest_line(item: dict) -> str:
    """The same line the digest flow writes into a digest's body."""
    return f"• {item['title']}" + (f": {item['body']}" if item["body"] else "")


def html_part(job: dict, unsubscribe: str, label: str) -> str:
    """`html_body` is sanitised upstream and goes in as it is; everything added here is escaped."""
    image = (f'<p><img src="{escape(job["image_url"])}" alt="" style="max-width:100%;height:auto"></p>\n'
             if is_https(job["image_url"]) else "")
    link = (f'<p><a href="{escape(job["deep_link"])}">{escape(job["deep_link"])}</a></p>\n'
            if is_https(job["deep_link"]) else "")
    buttons = " ".join(f'<a href="{escape(url)}" style="display:inline-block;padding:8px 16px;margin:4px 8px 4px 0;'
                       f'border-radius:4px;background:#0969da;color:#ffffff;text-decoration:none">{escape(title)}</a>'
                       for title, url in action_links(job))
    actions = f"<p>{buttons}</p>\n" if buttons else ""
    return (f'<!DOCTYPE html>\n<html lang="{escape(job["locale"])}">\n<head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(subject(job))}</title></head>\n"
            f'<body style="margin:0;padding:24px;font-family:Arial,Helvetica,sans-serif;color:#1f2328">\n'
            f"{image}<div>{job['html_body']}</div>\n{link}{actions}"
            f'<p style="margin-top:32px;font-size:12px;color:#6e7781"><a href="{escape(unsubscribe)}" '
            f'style="color:#6e7781">{escape(label)}</a></p>\n</body>\n</html>\n')


def action_links(job: dict) -> list[tuple[str, str]]:
    """Actions that are links; identifiers like "reply" only mean something inside the app."""
    return [(action["title"], action["action"]) for action in job["actions"] if is_https(action["action"])]


def is_https(url: str | None) -> bool:
    try:
        parts = urlsplit(url or "")
        return parts.scheme.lower() == "https" and bool(parts.hostname)
    except ValueError:  # e.g. "https://[not-an-ip"
        return False


def folded(name: str, value: str) -> str:
    """ASCII folded at spaces (line breaks become spaces); anything else as RFC 2047 encoded words."""
    if not value.isascii():
        return Header(value, "utf-8", header_name=name).encode()
    indent = " " * (len(name) + 2)  # the "Name: " before the value on the first line
    lines = textwrap.wrap(value, 78, initial_indent=indent, subsequent_indent=" ", break_long_words=False,
                          break_on_hyphens=False)
    return "\n".join(lines)[len(indent):]


def message_id(job_id: str) -> str:
    """`<job_id@notifyflow>`, with what a msg-id may not hold (":" in every job id) %-escaped."""
    left = "".join(c if c in _ATEXT else "".join(f"%{b:02X}" for b in c.encode()) for c in job_id)
    return f"<{left}@notifyflow>"


def unsubscribe_token(user_id: str, category: str, secret: str) -> str:
    """128 bits of HMAC-SHA256 over (user, category): enough to be unforgeable, short in a URL."""
    mac = hmac.new(secret.encode(), json.dumps([user_id, category]).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:16]).rstrip(b"=").decode()


def valid_unsubscribe(user_id: str, category: str, token: str, secret: str) -> bool:
    """For the endpoint behind UNSUBSCRIBE_URL: is this (u, c, t) one we signed?"""
    return hmac.compare_digest(token.encode(), unsubscribe_token(user_id, category, secret).encode())


def unsubscribe_link(base: str, user_id: str, category: str, token: str) -> str:
    return base + ("&" if "?" in base else "?") + urlencode({"u": user_id, "c": category, "t": token},
                                                          quote_via=quote)


def unsubscribe_mailto(sender: str, user_id: str, category: str, token: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2]
    return f"mailto:unsubscribe@{domain}?subject=" + quote(f"unsubscribe {user_id} {category} {token}", safe="")


# -- outcomes (pure) ------------------------------------------------------------------------------


def smtp_result(exc: Exception) -> Result:
    """What an aiosmtplib error means for this message."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):  # one recipient per message
        refused = exc.recipients[0]
        return reply_result(refused.code, refused.message, at_rcpt=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return reply_result(exc.code, exc.message, at_rcpt=isinstance(exc, aiosmtplib.SMTPRecipientRefused))
    if isinstance(exc, ValueError):  # UnicodeError included: an address SMTP cannot carry
        return Result("permanent", f"address cannot be sent over SMTP: {exc}")
    return Result("transient", f"{type(exc).__name__}: {exc}")  # connection refused, dropped, timed out


def reply_result(code: int, text: str, *, at_rcpt: bool) -> Result:
    reason = f"{code} {text}"
    if 400 <= code < 500:
        return Result("transient", reason)
    enhanced = text.split(" ", 1)[0]
    if enhanced[:2] in ("4.", "5.") and enhanced.count(".") == 2:
        hard = enhanced.startswith("5.1.")  # 5.1.x: bad destination mailbox; 5.7.x (policy, spam) is not
    else:
        hard = code in HARD_BOUNCE_CODES
    return Result("permanent", reason, state="bounced" if at_rcpt and hard else "failed")


def ses_result(exc: Exception) -> Result:
    """What a boto3 SES error means. SES reports real bounces later (via SNS), not here."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code, http_status = error.get("Code", ""), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        reason = f"{code}: {error.get('Message', '')}"
        if code in SES_THROTTLED or http_status >= 500:
            return Result("transient", reason)
        # MessageRejected, an unverified sender, a paused account: the same request cannot succeed.
        return Result("permanent", reason)
    return Result("transient", f"{type(exc).__name__}: {exc}")  # endpoint unreachable, timed out


# -- transports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    sender: str  # envelope sender (bare address)
    to: str
    data: bytes
    message_id: str


class Transport(Protocol):
    name: str

    async def deliver(self, mails: list[Mail]) -> list[Result]: ...


@dataclass(frozen=True)
class SmtpTransport:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    start_tls: bool = False
    use_tls: bool = False  # smtps://: TLS from the first byte
    name = "smtp"

    @classmethod
    def from_url(cls, url: str) -> SmtpTransport:
        """smtp://user:pass@host:port[?starttls=1] or smtps://user:pass@host:port."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname or port == -1:
            # Not echoed back: the URL may hold a password.
            raise ValueError("SMTP_URL must look like smtp://user:pass@host:port[?starttls=1]")
        start_tls = parse_qs(parts.query).get("starttls", ["0"])[-1].lower() in ("1", "true", "yes")
        return cls(parts.hostname, port or (465 if parts.scheme == "smtps" else 25),
                   unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None,
                   start_tls=start_tls, use_tls=parts.scheme == "smtps")

    def client(self) -> aiosmtplib.SMTP:
        # start_tls=False rather than aiosmtplib's "upgrade when offered": TLS is what SMTP_URL says.
        return aiosmtplib.SMTP(hostname=self.host, port=self.port, username=self.username, password=self.password,
                               start_tls=self.start_tls, use_tls=self.use_tls, timeout=TIMEOUT_S)

    async def deliver(self, mails: list[Mail]) -> list[Result]:
        results: list[Result] = [Result("transient", "not attempted")] * len(mails)
        lanes = min(len(mails), SMTP_CONNECTIONS)
        await asyncio.gather(*(self.session(mails, range(lane, len(mails), lanes), results) for lane in range(lanes)))
        return results

    async def session(self, mails: list[Mail], indices: range, results: list[Result]) -> None:
        """Sends its share over one connection, opening a new one whenever the last one broke."""
        client = None
        try:
            for i in indices:
                mail = mails[i]
                try:
                    if client is None:
                        client = self.client()
                        await client.connect()
                    await client.sendmail(mail.sender, [mail.to], mail.data)
                    results[i] = Result("sent", provider_id=mail.message_id)
                except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPSenderRefused,
                        aiosmtplib.SMTPDataError) as exc:
                    results[i] = smtp_result(exc)  # answered and reset: the connection is still good
                except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
                    results[i] = smtp_result(exc)
                    if client is not None:
                        client.close()
                    client = None
        finally:
            if client is not None and client.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.quit()


class SesTransport:
    name = "ses"

    def __init__(self, region: str, endpoint_url: str | None = None, *, access_key_id: str | None = None,
                 secret_access_key: str | None = None, session_token: str | None = None,
                 configuration_set: str | None = None, connections: int = 50) -> None:
        # No retries inside boto3: the delivery engine retries with its own backoff and circuit breaker.
        config = botocore.config.Config(connect_timeout=5, read_timeout=TIMEOUT_S, max_pool_connections=connections,
                                        retries={"total_max_attempts": 1})
        # A session of its own: boto3's default session is not thread-safe; clients are.
        self.client = boto3.session.Session().client(
            "sesv2", region_name=region, endpoint_url=endpoint_url, aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key, aws_session_token=session_token, config=config)
        self.configuration_set = configuration_set

    async def deliver(self, mails: list[Mail]) -> list[Result]:
        return list(await asyncio.gather(*(asyncio.to_thread(self.send_one, mail) for mail in mails)))

    def send_one(self, mail: Mail) -> Result:
        # Raw content keeps our headers (List-Unsubscribe, X-Notifyflow-Job); SES sets its own Message-ID.
        request = {"FromEmailAddress": mail.sender, "Destination": {"ToAddresses": [mail.to]},
                   "Content": {"Raw": {"Data": mail.data}}}
        if self.configuration_set:  # where SES publishes bounces and complaints
            request["ConfigurationSetName"] = self.configuration_set
        try:
            return Result("sent", provider_id=self.client.send_email(**request)["MessageId"])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            return ses_result(exc)


# -- suppressions ---------------------------------------------------------------------------------


class Suppressions(Protocol):
    def suppressed(self, addresses: set[str]) -> set[str]: ...
    def suppress(self, address: str, reason: str) -> None: ...


class PostgresSuppressions:
    """`email_suppressions`, one connection per worker thread."""

    def __init__(self, database_url: str) -> None:
        self.connections = PerThread(lambda: postgres.connect(database_url))

    def suppressed(self, addresses: set[str]) -> set[str]:
        if not addresses:
            return set()
        rows = self.connections.get().execute("SELECT address FROM email_suppressions WHERE address = ANY(%s)",
                                              (sorted(addresses),)).fetchall()
        return {address for (address,) in rows}

    def suppress(self, address: str, reason: str) -> None:
        self.connections.get().execute("INSERT INTO email_suppressions (address, reason) VALUES (%s, %s) "
                                       "ON CONFLICT (address) DO NOTHING", (address, reason))


def normal(address: str) -> str:
    """The suppression key: mailbox providers treat addresses case-insensitively, so do we."""
    return address.strip().lower()


# -- the provider ---------------------------------------------------------------------------------


class EmailProvider:
    batch_size = 50

    def __init__(self, transport: Transport, suppressions: Suppressions, *, sender: str = DEFAULT_FROM,
                 unsubscribe_url: str = DEFAULT_UNSUBSCRIBE_URL,
                 unsubscribe_secret: str = DEV_UNSUBSCRIBE_SECRET) -> None:
        self.envelope_from = parseaddr(sender)[1]
        if "@" not in self.envelope_from:
            raise ValueError(f"EMAIL_FROM must be an address like 'Notifications <notify@example.com>', "
                             f"not {sender!r}")
        if not is_https(unsubscribe_url):
            raise ValueError(f"UNSUBSCRIBE_URL must be an https URL (RFC 8058), not {unsubscribe_url!r}")
        self.transport, self.suppressions = transport, suppressions
        self.name = transport.name  # each transport has its own circuit breaker
        self.sender, self.unsubscribe_url, self.unsubscribe_secret = sender, unsubscribe_url, unsubscribe_secret

    @classmethod
    def from_env(cls, environ: Mapping[str, str], suppressions: Suppressions) -> EmailProvider:
        kind = environ.get("EMAIL_TRANSPORT", "smtp")
        if kind == "smtp":
            if not environ.get("SMTP_URL"):
                raise ValueError("SMTP_URL is not set: EMAIL_TRANSPORT=smtp needs smtp://user:pass@host:port")
            transport: Transport = SmtpTransport.from_url(environ["SMTP_URL"])
        elif kind == "ses":
            transport = SesTransport(environ.get("AWS_REGION") or "us-east-1", environ.get("AWS_ENDPOINT_URL") or None,
                                     access_key_id=environ.get("AWS_ACCESS_KEY_ID"),
                                     secret_access_key=environ.get("AWS_SECRET_ACCESS_KEY"),
                                     session_token=environ.get("AWS_SESSION_TOKEN"),
                                     configuration_set=environ.get("SES_CONFIGURATION_SET") or None,
                                     connections=cls.batch_size)
        else:
            raise ValueError(f"EMAIL_TRANSPORT must be smtp or ses, not {kind!r}")
        if not environ.get("UNSUBSCRIBE_SECRET"):
            log.warning("UNSUBSCRIBE_SECRET is not set: unsubscribe links are signed with the public dev secret")
        return cls(transport, suppressions, sender=environ.get("EMAIL_FROM") or DEFAULT_FROM,
                   unsubscribe_url=environ.get("UNSUBSCRIBE_URL") or DEFAULT_UNSUBSCRIBE_URL,
                   unsubscribe_secret=environ.get("UNSUBSCRIBE_SECRET") or DEV_UNSUBSCRIBE_SECRET)

    def targets(self, job: dict) -> list[dict | None]:
        return [None] if job["address"] else []

    async def send(self, sends: list[Send]) -> list[Result]:
        try:
            blocked = self.suppressions.suppressed({normal(send.job["address"]) for send in sends})
        except Exception as exc:  # noqa: BLE001 -- raising would crash the flow with these jobs claimed
            return [Result("transient", f"suppression list unavailable: {exc}")] * len(sends)
        results: list[Result | None] = [None] * len(sends)
        outgoing: list[tuple[int, Mail]] = []
        for i, send in enumerate(sends):
            if normal(send.job["address"]) in blocked:
                results[i] = Result("permanent", "address suppressed after a hard bounce", state="bounced")
                continue
            try:
                message = render(send.job, self.sender, self.unsubscribe_url, secret=self.unsubscribe_secret)
            except ValueError as exc:  # e.g. an address the header registry refuses
                results[i] = Result("permanent", f"cannot render the email: {exc}")
                continue
            outgoing.append((i, Mail(self.envelope_from, send.job["address"], message.as_bytes(),
                                     message_id(send.job["job_id"]))))
        delivered = await self.transport.deliver([mail for _, mail in outgoing]) if outgoing else []
        for (i, mail), result in zip(outgoing, delivered):
            results[i] = result
            if result.state == "bounced":
                self.disable(mail.to, result.reason or "hard bounce")
        return results

    def disable(self, address: str, reason: str) -> None:
        try:
            self.suppressions.suppress(normal(address), reason)
        except Exception:  # noqa: BLE001 -- the bounce is still reported; the next one suppresses again
            log.warning("could not suppress a bounced address", exc_info=True)
