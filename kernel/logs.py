"""Log records with secrets and personal data masked, whoever logs them (our code, uvicorn's
access log with `?token=`, a library's exception text): installed once per process, before
anything logs, as the record factory, so every handler and formatter sees the masked text."""

from __future__ import annotations

import logging
import re

MASKS = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), "[private key]"),
    (re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*"), "[jwt]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)\b(token|secret|password|passwd|pwd|api[_-]?key|auth|p256dh|signature|sig)=[^&\s\"']+"),
     r"\1=[redacted]"),
    (re.compile(r"(?i)\b(whsec|sk|pk)_[\w+/=]{8,}"), r"\1_[redacted]"),
    (re.compile(r"://([^/:@\s]+):[^@\s/]+@"), r"://\1:[redacted]@"),
    (re.compile(r"\b[0-9a-fA-F]{64}\b"), "[device token]"),
    (re.compile(r"[\w:-]{100,}"), "[device token]"),
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "[email]"),
    # International numbers, spaced or not, or 9+ digits in a row; not status codes like "550 5.1.1".
    (re.compile(r"\+\d[\d\s().-]{6,}\d|\d{9,}"), "[phone]"),
]


def redact(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


def install() -> None:
    """Mask every log record this process creates from now on (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        masked = redact(record.getMessage())
        # Formatters that read the arguments themselves (uvicorn's access log) get them masked one by
        # one, when that masks the whole line as well; otherwise the masked line is all they get.
        if isinstance(record.args, tuple) and record.args and isinstance(record.msg, str):
            record.msg = redact(record.msg)
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
            if record.getMessage() != masked:
                record.msg, record.args = masked, ()
        else:
            record.msg, record.args = masked, ()
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    factory.redacting = True
    logging.setLogRecordFactory(factory)
