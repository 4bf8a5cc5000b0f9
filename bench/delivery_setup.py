"""What bench.delivery measures, per provider channel: the jobs, our delivery path (the provider
through `Delivery` with real Redis claims, as the delivery flow runs it) and the bare protocol loop
it is compared with, both pointed at the same peer process."""

from __future__ import annotations

import random
import secrets
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import firebase_admin
import psycopg
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

from bench import delivery_baseline as bare
from bench.peer import PeerProcess
from connectors import postgres, redis
from kernel.topics import STATUS, codec_for, outbox_topic
from peers.fcm import peer_app
from sinks.apns import ApnsProvider, load_key
from sinks.circuit import Breakers
from sinks.claims import RedisClaims
from sinks.email import EmailProvider
from sinks.email_suppressions import PostgresSuppressions
from sinks.email_transports import SesTransport, SmtpTransport
from sinks.engine import Delivery
from sinks.fcm import FcmProvider
from sinks.in_app import InAppSink
from sinks.sms import SmsProvider
from sinks.webhook import WebhookProvider
from sinks.webpush import WebPushProvider

SENDER = "notifications@notifyflow.local"  # EmailProvider's default sender, verified in the local SES
SUBSCRIPTIONS = 50  # Web Push jobs are spread over this many browsers
USERS = 500


def jobs(channel: str, count: int, **fields) -> list[dict]:
    """`count` DeliveryJobs on `channel`, each a notification of its own; a field given as a
    callable is called with the job's index, e.g. `address=lambda n: f"+1555{n:07d}"`."""
    codec, run = codec_for(outbox_topic(channel, "normal")), uuid.uuid4().hex[:8]
    out = []
    for n in range(count):
        notification_id = f"bench-{run}-{n}"
        user = f"u{n % USERS}"
        extra = {name: value(n) if callable(value) else value for name, value in fields.items()}
        out.append(codec.decode(codec.encode({
            "job_id": f"{notification_id}:{user}:{channel}:0", "notification_id": notification_id,
            "revision": 0, "request_ids": [notification_id], "user_id": user, "tenant": "bench",
            "channel": channel, "lane": "normal", "kind": "single", "priority": "normal", "type": "info",
            "category": "ci", "title": f"Build #{n} passed", "body": "All green", "html_body": "All green",
            "locale": "en", "collapse_key": notification_id, "created_at": datetime.now(UTC), **extra})))
    return out


def device(platform: str, token: str | None = None, web_push: dict | None = None, name: str = "device") -> dict:
    return {"device_id": name, "platform": platform, "token": token, "web_push": web_push}


def engine(urls: dict[str, str], provider) -> Callable[[list[dict]], int]:
    """A batch through `Delivery` with real Redis claims, as the delivery flow runs it; returns how
    many of its sends the engine reported `sent`."""
    delivery = Delivery(provider, RedisClaims(redis.client(urls["REDIS_URL"])), Breakers(), rng=random.Random(1))
    state = delivery.new_state()

    def send(batch: list[dict]) -> int:
        records = delivery.process(state, batch, datetime.now(UTC))
        return sum(1 for topic, _, value in records if topic == STATUS and value["status"] == "sent")

    return send


@dataclass
class Channel:
    """One provider channel ready to measure: `jobs(n)` builds n jobs (one send each), `ours` sends
    a list of them through our delivery path, `bare` through the bare protocol loop, each returning
    how many succeeded; `key` is the peer's count of this channel's sends."""

    name: str
    jobs: Callable[[int], list[dict]]
    ours: Callable[[list[dict]], int]
    bare: bare.Bare
    key: str = "received"


def webhook(peer: PeerProcess, urls: dict[str, str], cleanup: ExitStack) -> Channel:
    url, secret = peer.details["url"], peer.details["secret"]
    with psycopg.connect(urls["DATABASE_URL"], autocommit=True) as db:
        db.execute("INSERT INTO webhook_endpoints (tenant, url, secret) VALUES ('bench', %s, %s) "
                   "ON CONFLICT (tenant) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret", (url, secret))
    return Channel("webhook", lambda count: jobs("webhook", count),
                   engine(urls, WebhookProvider(postgres.WebhookEndpoints(urls["DATABASE_URL"]))),
                   bare.BareWebhook(url, secret))


def fcm(peer: PeerProcess, urls: dict[str, str], cleanup: ExitStack) -> Channel:
    def app() -> firebase_admin.App:  # one each, so neither shares the other's connections or token
        made = peer_app(peer.details["url"], peer.details["project_id"], peer.details["service_account"])
        cleanup.callback(firebase_admin.delete_app, made)
        return made

    return Channel("fcm", lambda count: jobs("push", count, devices=lambda n: [device("android", f"fcm-{n}")]),
                   engine(urls, FcmProvider(app())), bare.BareFcm(app(), peer.details["url"]))


def apns(peer: PeerProcess, urls: dict[str, str], cleanup: ExitStack) -> Channel:
    details = peer.details
    provider = ApnsProvider(key_id=details["key_id"], team_id=details["team_id"], bundle_id=details["bundle_id"],
                            private_key=load_key(details["private_key_pem"], "APNS_PRIVATE_KEY"), url=details["url"],
                            ca_file=details["ca_pem_path"])
    return Channel("apns", lambda count: jobs("push", count,
                                              devices=lambda n: [device("ios", secrets.token_hex(32))]),
                   engine(urls, provider), bare.BareApns(**details))


def webpush(peer: PeerProcess, urls: dict[str, str], cleanup: ExitStack) -> Channel:
    provider = WebPushProvider(Vapid(private_key=ec.generate_private_key(ec.SECP256R1())))
    browsers = []
    for n in range(SUBSCRIPTIONS):
        subscription = peer.call("subscribe", key=provider.application_server_key)
        browsers.append(device("web", web_push={key: subscription[key] for key in ("endpoint", "p256dh", "auth")},
                               name=f"browser-{n}"))
    return Channel("webpush", lambda count: jobs("push", count, devices=lambda n: [browsers[n % SUBSCRIPTIONS]]),
                   engine(urls, provider), bare.BareWebPush(provider))


def email_jobs(count: int) -> list[dict]:
    return jobs("email", count, address=lambda n: f"bench-{n}@example.com")


def smtp(peer: PeerProcess, urls: dict[str, str], cleanup: ExitStack) -> Channel:
    host, port = peer.details["host"], peer.details["port"]
    provider = EmailProvider(SmtpTransport(host, port), PostgresSuppressions(urls["DATABASE_URL"]), sender=SENDER)
    return Channel("smtp", email_jobs, engine(urls, provider), bare.BareSmtp(host, port, SENDER))


def ses(peer: PeerProcess, urls: dict[str, str], cleanup: ExitStack) -> Channel:
    endpoint = peer.details["endpoint_url"]
    peer.call("verify", address=SENDER)
    transport = SesTransport("us-east-1", endpoint, access_key_id="testing", secret_access_key="testing",
                             connections=EmailProvider.batch_size)
    provider = EmailProvider(transport, PostgresSuppressions(urls["DATABASE_URL"]), sender=SENDER)
    return Channel("ses", email_jobs, engine(urls, provider), bare.BareSes(endpoint, SENDER), key="ses")


def sms(peer: PeerProcess, urls: dict[str, str], cleanup: ExitStack) -> Channel:
    endpoint = peer.details["endpoint_url"]
    provider = SmsProvider.from_env({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                                     "AWS_SECRET_ACCESS_KEY": "testing"})
    return Channel("sms", lambda count: jobs("sms", count, address=lambda n: f"+1555{n:07d}"),
                   engine(urls, provider), bare.BareSns(endpoint), key="sns")


def in_app(urls: dict[str, str], count: int) -> tuple[int, float]:
    """(rows delivered, seconds) for `count` in-app jobs through the sink, BATCH-sized calls as the
    provider channels get; every job must end `delivered` and have its row in PostgreSQL."""
    sink = InAppSink(postgres.connect(urls["DATABASE_URL"]), redis.client(urls["REDIS_URL"]))
    built, batch = jobs("in_app", count), 500
    started = time.perf_counter()
    done = sum(sum(1 for status in sink.deliver(built[start:start + batch], datetime.now(UTC))
                   if status["status"] == "delivered") for start in range(0, count, batch))
    seconds = time.perf_counter() - started
    with psycopg.connect(urls["DATABASE_URL"]) as db:
        rows = db.execute("SELECT count(*) FROM notifications WHERE id = ANY(%s)",
                          ([job["notification_id"] for job in built],)).fetchone()[0]
    return min(done, rows), seconds


# channel -> (peer kind, setup)
CHANNELS = {"webhook": ("webhook", webhook), "fcm": ("fcm", fcm), "apns": ("apns", apns),
            "webpush": ("webpush", webpush), "smtp": ("smtp", smtp), "ses": ("aws", ses), "sms": ("aws", sms)}
