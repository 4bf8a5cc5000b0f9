"""Secrets and personal data never reach a log line, whoever logs them."""

from __future__ import annotations

import logging

import pytest

from kernel import logs
from kernel.logs import redact

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbmEifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize(("line", "masked"), [
    (f'127.0.0.1:5 - "WebSocket /ws?token={JWT}&device=d1" [accepted]',
     '127.0.0.1:5 - "WebSocket /ws?token=[redacted]&device=d1" [accepted]'),
    (f"authorization: Bearer {JWT}", "authorization: Bearer [jwt]"), ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [redacted]"),
    ("connecting to postgresql://notify:s3cret@db:5432/notify", "connecting to postgresql://notify:[redacted]@db:5432/notify"),
    ("550 ana.smith+tag@example.co.uk: no such user", "550 [email]: no such user"),
    ("SNS: +15550100123 has opted out", "SNS: [phone] has opted out"),
    ("invalid number +44 20 7946 0958", "invalid number [phone]"),
    ("signing with whsec_bm90aWZ5Zmxvdy10ZXN0LXNlY3JldA==", "signing with whsec_[redacted]"),
    ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----", "[private key]"),
    ("BadDeviceToken for " + "ab12" * 16, "BadDeviceToken for [device token]"),
    ("410 from https://push.example/send/" + "dGVzdA" * 30, "410 from https://push.example/send/[device token]"),
    ("circuit open for webhook", "circuit open for webhook"),
])
def test_redact(line, masked):
    assert redact(line) == masked


def test_every_record_is_masked_with_its_arguments_and_traceback(caplog):
    logs.install()

    with caplog.at_level(logging.INFO):
        logging.getLogger("tests.access").info('%s - "GET %s HTTP/1.1" %d', "127.0.0.1", f"/events?token={JWT}", 200)
        try:
            raise ConnectionError("SMTP refused ana@example.com")
        except ConnectionError:
            logging.getLogger("sinks.email").exception("could not suppress %s", "bo@example.com")
    assert JWT not in caplog.text and "@example.com" not in caplog.text
    assert '"GET /events?token=[redacted] HTTP/1.1" 200' in caplog.text
    assert "could not suppress [email]" in caplog.text and "SMTP refused [email]" in caplog.text


def test_uvicorns_access_log_formats_the_masked_arguments(capsys):
    """Its formatter unpacks the record's arguments (client, method, path, version, status)."""
    from uvicorn.logging import AccessFormatter

    logs.install()
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/api/notifications?token={JWT}", "1.1", 200), None)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert line == '127.0.0.1:5 - "GET /api/notifications?token=[redacted] HTTP/1.1" 200 OK'


def test_a_secret_split_over_the_arguments_is_masked_in_the_whole_line():
    logs.install()
    record = logging.getLogger("tests.split").makeRecord(
        "tests.split", logging.INFO, __file__, 1, "%s@%s", ("ana.smith", "example.com"), None)
    assert (record.getMessage(), record.args) == ("[email]", ())
