"""A local SMTP server (aiosmtpd) that records what it is sent and can bounce or defer recipients.

    with SmtpServer() as smtp:
        # send to smtp.host:smtp.port with any SMTP client
        [mail] = smtp.wait_for(1)   # {"mail_from", "rcpt_tos", "message": EmailMessage}

Bounces and deferrals are answered at RCPT TO, where real receiving servers usually refuse, so
the sender sees the same SMTP reply codes (550 hard bounce, 451 try later) it would in production.
"""

from __future__ import annotations

import email
import email.policy
import threading

from aiosmtpd.controller import Controller

from notifyflow.stack import free_port

BOUNCE_REPLY = "550 5.1.1 user unknown"
DEFER_REPLY = "451 4.3.0 try again later"


class _RecordingHandler:
    """aiosmtpd handler hooks; they run on the controller's event-loop thread, hence the lock."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.messages: list[dict] = []
        self.bounced: set[str] = set()
        self.deferred: dict[str, int] = {}  # address -> how many more times to answer 451

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's name)
        key = address.lower()  # compared case-insensitively: senders normalise addresses differently
        with self.lock:
            if key in self.bounced:
                return BOUNCE_REPLY
            if self.deferred.get(key, 0) > 0:
                self.deferred[key] -= 1
                return DEFER_REPLY
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append({"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                                  "message": message})
            self.lock.notify_all()
        return "250 Message accepted for delivery"


class SmtpServer:
    """An SMTP server on 127.0.0.1 and a free port (aiosmtpd cannot bind port 0 and report it)."""

    def __init__(self) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        self._handler = _RecordingHandler()
        self._controller = Controller(self._handler, hostname=self.host, port=self.port, enable_SMTPUTF8=True)

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def bounce(self, address: str) -> None:
        """RCPT TO for the address is answered 550 (a hard bounce) from now on."""
        with self._handler.lock:
            self._handler.bounced.add(address.lower())

    def defer(self, address: str, times: int = 1) -> None:
        """RCPT TO for the address is answered 451 (a soft failure) the next `times` times."""
        with self._handler.lock:
            self._handler.deferred[address.lower()] = times

    @property
    def messages(self) -> list[dict]:
        """Accepted messages: {"mail_from", "rcpt_tos", "message": email.message.EmailMessage}."""
        with self._handler.lock:
            return list(self._handler.messages)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict]:
        handler = self._handler
        with handler.lock:
            if not handler.lock.wait_for(lambda: len(handler.messages) >= n, timeout):
                raise TimeoutError(f"SMTP peer got {len(handler.messages)} messages, expected {n}")
            return list(handler.messages)
