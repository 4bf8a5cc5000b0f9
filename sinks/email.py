"""Email: one multipart message per job, over SMTP or Amazon SES v2.

The message is rendered once (sinks/email_message.py) and handed to either transport
(sinks/email_transports.py) as raw bytes, so both send the same thing. A hard bounce suppresses the
address, and suppressed addresses are skipped before anything is sent (sinks/email_suppressions.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from email.utils import parseaddr

from kernel.unsubscribe import DEV_SECRET, secret_from_env
from sinks.email_message import is_https, message_id, render
from sinks.email_suppressions import Suppressions, normal
from sinks.email_transports import Mail, SesTransport, SmtpTransport, Transport, Unrenderable
from sinks.engine import Result, Send

log = logging.getLogger(__name__)

DEFAULT_FROM = "notifications@notifyflow.local"
DEFAULT_UNSUBSCRIBE_URL = "https://notifyflow.local/unsubscribe"


class EmailProvider:
    batch_size = 50

    def __init__(self, transport: Transport, suppressions: Suppressions, *, sender: str = DEFAULT_FROM,
                 unsubscribe_url: str = DEFAULT_UNSUBSCRIBE_URL,
                 unsubscribe_secret: str = DEV_SECRET) -> None:
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
                   unsubscribe_secret=secret_from_env(environ))

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
            # Rendered by the transport as the mail goes out, so building one message overlaps with
            # the server taking the previous ones (the email package is most of our CPU per mail).
            outgoing.append((i, Mail(self.envelope_from, send.job["address"], functools.partial(self.content, send.job),
                                     message_id(send.job["job_id"]))))
        delivered = await self.transport.deliver([mail for _, mail in outgoing]) if outgoing else []
        for (i, mail), result in zip(outgoing, delivered):
            results[i] = result
            if result.state == "bounced":
                self.disable(mail.to, result.reason or "hard bounce")
        return results

    def content(self, job: dict) -> bytes:
        try:
            message = render(job, self.sender, self.unsubscribe_url, secret=self.unsubscribe_secret)
        except ValueError as exc:  # e.g. an address the header registry refuses
            raise Unrenderable(f"cannot render the email: {exc}") from exc
        return message.as_bytes()

    def disable(self, address: str, reason: str) -> None:
        try:
            self.suppressions.suppress(normal(address), reason)
        except Exception:  # noqa: BLE001 -- the bounce is still reported; the next one suppresses again
            log.warning("could not suppress a bounced address", exc_info=True)
