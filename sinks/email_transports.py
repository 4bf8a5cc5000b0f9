"""The ways an email leaves: SMTP (aiosmtplib, a few connections kept open between batches) or
Amazon SES v2 (boto3), both taking the same rendered bytes, and what each one's errors mean for the
message."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import boto3
import botocore.config
import botocore.exceptions

from sinks.engine import Result
from sinks.loop import LoopBound

TIMEOUT_S = 10.0
# An SMTP connection carries one transaction at a time, so a batch is spread over a few of them.
SMTP_CONNECTIONS = 8
# A connection idle this long is closed rather than reused: servers drop idle clients after a while.
SMTP_KEEP_IDLE_S = 30.0
# Worth another try later: SES is shedding load, not refusing this message.
SES_THROTTLED = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
# Without an enhanced status code, the RCPT replies that mean "this mailbox does not exist".
HARD_BOUNCE_CODES = {550, 551, 553}


class Unrenderable(ValueError):
    """The message cannot be built (its text says why): the mail fails for good, nothing was sent."""


@dataclass(frozen=True)
class Mail:
    sender: str  # envelope sender (bare address)
    to: str
    content: bytes | Callable[[], bytes]  # the message, or how to make it when it goes out
    message_id: str

    def data(self) -> bytes:
        """The message's bytes; raises Unrenderable when it cannot be built."""
        return self.content() if callable(self.content) else self.content


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
    # Connections left open by earlier batches, per event loop: [(client, when it was last used)].
    kept: LoopBound[list] = field(default_factory=lambda: LoopBound(list, close=close_kept), init=False, repr=False,
                                  compare=False)

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
        lanes, kept = min(len(mails), SMTP_CONNECTIONS), self.kept.get()
        await asyncio.gather(*(self.session(mails, range(lane, len(mails), lanes), results, kept)
                               for lane in range(lanes)))
        return results

    async def session(self, mails: list[Mail], indices: range, results: list[Result], kept: list) -> None:
        """Sends its share over one connection (one kept from an earlier batch when there is one),
        opening a new one whenever the last one broke, and keeps it open for the next batch."""
        client = take(kept)
        reused = client is not None
        try:
            for i in indices:
                mail = mails[i]
                try:
                    data = mail.data()
                except Unrenderable as exc:
                    results[i] = Result("permanent", str(exc))
                    continue
                try:
                    if client is None:
                        client, reused = self.client(), False
                        await client.connect()
                    try:
                        await client.sendmail(mail.sender, [mail.to], data)
                    except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                        if not reused:
                            raise
                        # The server closed the kept connection while it sat idle: not this mail's fault.
                        client.close()
                        client, reused = self.client(), False
                        await client.connect()
                        await client.sendmail(mail.sender, [mail.to], data)
                    reused = False
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
            if client is not None and client.is_connected and len(kept) < SMTP_CONNECTIONS:
                kept.append((client, time.monotonic()))
            elif client is not None and client.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.quit()


async def close_kept(kept: list) -> None:
    while kept:
        client, _ = kept.pop()
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()


def take(kept: list) -> aiosmtplib.SMTP | None:
    """A kept connection still open and not idle too long; the others are closed."""
    while kept:
        client, last_used = kept.pop()
        if client.is_connected and time.monotonic() - last_used < SMTP_KEEP_IDLE_S:
            return client
        client.close()
    return None


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
        try:
            data = mail.data()
        except Unrenderable as exc:
            return Result("permanent", str(exc))
        # Raw content keeps our headers (List-Unsubscribe, X-Notifyflow-Job); SES sets its own Message-ID.
        request = {"FromEmailAddress": mail.sender, "Destination": {"ToAddresses": [mail.to]},
                   "Content": {"Raw": {"Data": data}}}
        if self.configuration_set:  # where SES publishes bounces and complaints
            request["ConfigurationSetName"] = self.configuration_set
        try:
            return Result("sent", provider_id=self.client.send_email(**request)["MessageId"])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            return ses_result(exc)


# -- what the errors mean ----------------------------------------------------------------------


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
