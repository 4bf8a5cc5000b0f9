"""The gateway as tests run it: uvicorn on a free loopback port, against the session's stack."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime

import uvicorn

from connectors.kafka import TopicReader
from gateway.app import SERVER_OPTIONS, create_app
from gateway.auth import TokenVerifier
from kernel import settings
from kernel.topics import codec_for
from notifyflow.stack import free_port

GATEWAY_SECRET = "gateway-test-secret-of-32-bytes!"
# Any P-256 public point does: browsers only pass it to their push service.
GATEWAY_VAPID_PUBLIC_KEY = ("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4")


@contextmanager
def serve_gateway(urls: dict[str, str], *, tls_pem: str | None = None, **app_options):
    """`tls_pem`: a PEM file with the key and certificate chain to serve https with (for the email
    sink, which only links to an https /unsubscribe)."""
    config = settings.Settings(**{name.lower(): value for name, value in urls.items()}, schema_registry_url=None)
    app = create_app(config, TokenVerifier(GATEWAY_SECRET), demo=True, vapid_public_key=GATEWAY_VAPID_PUBLIC_KEY,
                     **app_options)
    options = {**SERVER_OPTIONS, "factory": False}  # the app is built here, with the test's settings
    if tls_pem:
        options |= {"ssl_certfile": tls_pem, "ssl_keyfile": tls_pem}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"{'https' if tls_pem else 'http'}://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def in_app_job(user: str, notification_id: str, revision: int = 0, tenant: str = "default", **fields) -> dict:
    """A complete DeliveryJob for the tenant's user (a token without a tenant is the default tenant's):
    the codec fills every default."""
    minimal = {"job_id": f"{notification_id}:{user}:in_app:{revision}", "notification_id": notification_id,
               "revision": revision, "request_ids": [notification_id], "user_id": user, "tenant": tenant,
               "channel": "in_app", "lane": "normal", "kind": "update" if revision else "single",
               "priority": "normal", "type": "info", "category": "messages", "title": "Bob sent you a message",
               "body": "Lunch?", "html_body": "Lunch?", "locale": "en", "collapse_key": notification_id,
               "created_at": datetime.now(UTC), **fields}
    codec = codec_for("notify.outbox.in_app.normal")
    return codec.decode(codec.encode(minimal))


def records_for(user: str, topic: str, count: int, timeout_s: float = 15.0) -> list[dict]:
    """The records of `user` on `topic`, once `count` have arrived (fewer when `timeout_s` ran out)."""
    found, deadline = [], time.monotonic() + timeout_s
    with TopicReader(os.environ["KAFKA_BOOTSTRAP_SERVERS"], [topic]) as reader:
        while len(found) < count and time.monotonic() < deadline:
            found += [codec_for(topic).decode(m.value()) for m in reader.poll(0.5) if m.key() == user.encode()]
    return found
