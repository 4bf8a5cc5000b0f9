"""Browser tests of the web client: `web/` served by a tiny static server, driven by headless Chromium.

Chromium comes from the distribution (`/usr/bin/chromium`, or NOTIFYFLOW_CHROMIUM); Playwright's
own browser download is not used. `make test` installs it; without it these tests fail and say so.
"""

from __future__ import annotations

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from notifyflow.stack import free_port

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("NOTIFYFLOW_CHROMIUM", "/usr/bin/chromium")
DEFAULT_TIMEOUT_MS = 5_000


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


@pytest.fixture(scope="session")
def web_server():
    """Base URL of `web/` served on a free 127.0.0.1 port for the session."""
    handler = functools.partial(_QuietHandler, directory=str(WEB_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="web-static", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# Per module, not per session: Playwright's sync API keeps an event loop running in this thread
# while it lives, and later tests (and the delivery engine) call asyncio.run.
@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make test does) "
                    "or set NOTIFYFLOW_CHROMIUM", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"],
                                              timeout=30_000)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh context and page per test; any uncaught page error fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"errors in the page: {errors}"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


# ---- against the live gateway (demo mode) ------------------------------------------------------


@pytest.fixture
def open_page(browser):
    """Factory of pages, each in its own context (a separate browser profile: another "device").

    Like `page`, any uncaught page error or console error fails the test, except console messages
    matching a regex the test expects (`open_page(allow=[r"status of 400"])`), e.g. the browser's
    own "Failed to load resource" line for a 400 the test provokes on purpose.
    """
    import re

    contexts, errors, allowed = [], [], []

    def make(allow: list[str] = (), **context_options):
        allowed.extend(re.compile(pattern) for pattern in allow)
        context = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **context_options})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        tab = context.new_page()
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        return tab

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
    unexpected = [e for e in errors if not any(p.search(e) for p in allowed)]
    assert not unexpected, f"errors in the page: {unexpected}"


@pytest.fixture
def deliver(stack):
    """deliver(user, notification_id, revision=0, **fields): what the delivery flow's in-app sink does
    - the center row in PostgreSQL, then the live publish on Redis."""
    from datetime import UTC, datetime

    from connectors import postgres, redis
    from sinks.in_app import InAppSink

    from gateway_harness import in_app_job

    sink = InAppSink(postgres.connect(stack.urls["DATABASE_URL"]), redis.client(stack.urls["REDIS_URL"]))

    def send(user: str, notification_id: str, revision: int = 0, **fields):
        return sink.deliver([in_app_job(user, notification_id, revision, **fields)], datetime.now(UTC))

    def send_many(jobs: list[dict]):
        return sink.deliver(jobs, datetime.now(UTC))

    send.many = send_many
    try:
        yield send
    finally:
        sink.connection.close()
        sink.redis.close()
