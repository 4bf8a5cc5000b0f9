"""Sends per second per channel, through the same code the delivery flows run, against the
local protocol peers (loopback; the figures measure our side, not a provider's).

    python -m bench.delivery [--jobs N]

Each channel runs its own default number of jobs (DEFAULT_JOBS), sized so the whole run, stack
start included, takes about 35 s on an idle 2-core machine and stays under 50 s on a busy one;
`--jobs N` runs N jobs on every channel instead. Push jobs carry one device each and email and
SMS jobs one address, so a job is one send. A figure counts only the sends the code reported as
sent (delivered, for in_app), and the peer is asked afterwards whether it recorded that many: a
mismatch, or a send that did not succeed, is a "warning:" line on stderr. The peers run in this
process, so their work shares its CPU (and GIL) with ours.

Last line: <channel>_sends_per_s=<n> for each channel.
"""

from __future__ import annotations

import argparse
import logging
import random
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from connectors import postgres, redis
from kernel.topics import codec_for, outbox_topic
from notifyflow.stack import LocalStack
from peers.apns import ApnsService
from peers.aws import MotoServer
from peers.fcm import FcmService, fcm_app
from peers.smtp import SmtpServer
from peers.webhook import WebhookReceiver
from peers.webpush import WebPushService
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

console = Console(stderr=True)
BATCH = 500
SENDER = "notifications@notifyflow.local"  # EmailProvider's default sender, verified in the local SES
SUBSCRIPTIONS = 50  # Web Push jobs are spread over this many browsers
# Jobs per channel by default: 3-5 s each on an idle 2-core machine.
DEFAULT_JOBS = {"in_app": 2000, "webhook": 800, "fcm": 1000, "apns": 1000, "webpush": 800, "smtp": 500,
                "ses": 300, "sms": 400}


@dataclass
class Bench:
    """One channel ready to measure: `send` delivers a batch and returns its status records,
    `jobs(count)` builds that many jobs for it, `recorded()` is how many sends its peer has
    recorded since the setup began."""

    name: str
    send: Callable[[list[dict]], list]
    jobs: Callable[[int], list[dict]]
    recorded: Callable[[], int]


def jobs(channel: str, count: int, **fields) -> list[dict]:
    """`count` DeliveryJobs on `channel`; a field given as a callable is called with the job's
    index, e.g. `address=lambda n: f"+1555{n:07d}"`."""
    codec, run = codec_for(outbox_topic(channel, "normal")), uuid.uuid4().hex[:8]
    out = []
    for n in range(count):
        notification_id = f"bench-{run}-{n}"
        extra = {name: value(n) if callable(value) else value for name, value in fields.items()}
        out.append(codec.decode(codec.encode({
            "job_id": f"{notification_id}:u{n % 500}:{channel}:0", "notification_id": notification_id,
            "revision": 0, "request_ids": [notification_id], "user_id": f"u{n % 500}", "tenant": "bench",
            "channel": channel, "lane": "normal", "kind": "single", "priority": "normal", "type": "info",
            "category": "ci", "title": f"Build #{n} passed", "body": "All green", "html_body": "All green",
            "locale": "en", "collapse_key": notification_id, "created_at": datetime.now(UTC), **extra})))
    return out


def engine(urls: dict[str, str], provider) -> Callable[[list[dict]], list]:
    """A batch through `Delivery` with real Redis claims, as the delivery flow runs it."""
    delivery = Delivery(provider, RedisClaims(redis.client(urls["REDIS_URL"])), Breakers(), rng=random.Random(1))
    state = delivery.new_state()
    return lambda batch: delivery.process(state, batch, datetime.now(UTC))


def device(platform: str, token: str | None = None, web_push: dict | None = None, name: str | None = None) -> dict:
    return {"device_id": name or f"{platform}-{secrets.token_hex(4)}", "platform": platform, "token": token,
            "web_push": web_push}


@contextmanager
def in_app(urls: dict[str, str]) -> Iterator[Bench]:
    sink = InAppSink(postgres.connect(urls["DATABASE_URL"]), redis.client(urls["REDIS_URL"]))
    made: list[str] = []

    def build(count: int) -> list[dict]:
        built = jobs("in_app", count)
        made.extend(job["notification_id"] for job in built)
        return built

    def recorded() -> int:
        with psycopg.connect(urls["DATABASE_URL"]) as db:
            return db.execute("SELECT count(*) FROM notifications WHERE id = ANY(%s)", (made,)).fetchone()[0]

    yield Bench("in_app", lambda batch: sink.deliver(batch, datetime.now(UTC)), build, recorded)


@contextmanager
def webhook(urls: dict[str, str]) -> Iterator[Bench]:
    with WebhookReceiver() as receiver, psycopg.connect(urls["DATABASE_URL"], autocommit=True) as db:
        db.execute("INSERT INTO webhook_endpoints (tenant, url, secret) VALUES ('bench', %s, %s) "
                   "ON CONFLICT (tenant) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret",
                   (receiver.url, receiver.secret))
        yield Bench("webhook", engine(urls, WebhookProvider(postgres.WebhookEndpoints(urls["DATABASE_URL"]))),
                    lambda count: jobs("webhook", count), lambda: len(receiver.received))


@contextmanager
def fcm(urls: dict[str, str]) -> Iterator[Bench]:
    with FcmService() as peer:
        yield Bench("fcm", engine(urls, FcmProvider(fcm_app(peer))),
                    lambda count: jobs("push", count, devices=lambda n: [device("android", f"fcm-{n}", name="phone")]),
                    lambda: len(peer.received))


@contextmanager
def apns(urls: dict[str, str]) -> Iterator[Bench]:
    with ApnsService() as peer:
        provider = ApnsProvider(key_id=peer.key_id, team_id=peer.team_id, bundle_id=peer.bundle_id,
                                private_key=load_key(peer.private_key_pem, "APNS_PRIVATE_KEY"), url=peer.url,
                                ca_file=peer.ca_pem_path)
        yield Bench("apns", engine(urls, provider),
                    lambda count: jobs("push", count,
                                       devices=lambda n: [device("ios", secrets.token_hex(32), name="iphone")]),
                    lambda: len(peer.received))


@contextmanager
def webpush(urls: dict[str, str]) -> Iterator[Bench]:
    with WebPushService() as peer:
        provider = WebPushProvider(Vapid(private_key=ec.generate_private_key(ec.SECP256R1())))
        browsers = []
        for n in range(SUBSCRIPTIONS):
            subscription = peer.subscribe(application_server_key=provider.application_server_key)
            browsers.append(device("web", web_push={key: subscription[key] for key in ("endpoint", "p256dh", "auth")},
                                   name=f"browser-{n}"))
        yield Bench("webpush", engine(urls, provider),
                    lambda count: jobs("push", count, devices=lambda n: [browsers[n % SUBSCRIPTIONS]]),
                    lambda: len(peer.received))


@contextmanager
def smtp(urls: dict[str, str]) -> Iterator[Bench]:
    with SmtpServer() as peer:
        provider = EmailProvider(SmtpTransport(peer.host, peer.port), PostgresSuppressions(urls["DATABASE_URL"]))
        yield Bench("smtp", engine(urls, provider),
                    lambda count: jobs("email", count, address=lambda n: f"bench-{n}@example.com"),
                    lambda: len(peer.messages))


@contextmanager
def ses(urls: dict[str, str]) -> Iterator[Bench]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    with MotoServer() as peer:
        peer.verify_email_identity(SENDER)
        before = len(peer.sent_emails())  # moto's state is per process, shared by every MotoServer
        transport = SesTransport("us-east-1", peer.endpoint_url, access_key_id="testing",
                                 secret_access_key="testing", connections=EmailProvider.batch_size)
        provider = EmailProvider(transport, PostgresSuppressions(urls["DATABASE_URL"]), sender=SENDER)
        yield Bench("ses", engine(urls, provider),
                    lambda count: jobs("email", count, address=lambda n: f"bench-{n}@example.com"),
                    lambda: len(peer.sent_emails()) - before)


@contextmanager
def sms(urls: dict[str, str]) -> Iterator[Bench]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with MotoServer() as peer:
        before = len(peer.sent_sms())
        provider = SmsProvider.from_env({"AWS_ENDPOINT_URL": peer.endpoint_url, "AWS_ACCESS_KEY_ID": "testing",
                                         "AWS_SECRET_ACCESS_KEY": "testing"})
        yield Bench("sms", engine(urls, provider),
                    lambda count: jobs("sms", count, address=lambda n: f"+1555{n:07d}"),
                    lambda: len(peer.sent_sms()) - before)


CHANNELS = {"in_app": in_app, "webhook": webhook, "fcm": fcm, "apns": apns, "webpush": webpush, "smtp": smtp,
            "ses": ses, "sms": sms}


def succeeded(records: list) -> int:
    """Sends the code reports as done: `sent` statuses from Delivery, `delivered` from the in-app sink."""
    values = (r[2] for r in records if r[0] == "notify.status") if records and isinstance(records[0], tuple) \
        else records
    return sum(1 for value in values if value["status"] in ("sent", "delivered"))


def measure(send, batch_jobs: list[dict], label: str) -> tuple[int, float]:
    """(successful sends, seconds) for the jobs, a batch at a time."""
    done = 0
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=len(batch_jobs))
        started = time.perf_counter()
        for start in range(0, len(batch_jobs), BATCH):
            done += succeeded(send(batch_jobs[start:start + BATCH]))
            bar.advance(task, min(BATCH, len(batch_jobs) - start))
        return done, time.perf_counter() - started


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--jobs", type=int, default=None,
                        help="jobs for every channel (default: per channel, ~35 s in all when idle: "
                             + ", ".join(f"{name} {count}" for name, count in DEFAULT_JOBS.items()) + ")")
    args = parser.parse_args()
    figures = {}
    with LocalStack(on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack:
        for channel, setup in CHANNELS.items():
            with setup(stack.urls) as bench:
                batch_jobs = bench.jobs(args.jobs if args.jobs is not None else DEFAULT_JOBS[channel])
                done, seconds = measure(bench.send, batch_jobs, bench.name)
                figures[bench.name] = done / seconds if seconds else 0.0
                recorded = bench.recorded()
                if done != len(batch_jobs):
                    warn(f"{bench.name}: {done} of {len(batch_jobs)} sends succeeded")
                if recorded != done:
                    warn(f"{bench.name}: the peer recorded {recorded} sends, the code reported {done}")
                console.print(f"{bench.name}: {figures[bench.name]:,.0f} sends/s ({done} sends in {seconds:.1f} s)")
    print(" ".join(f"{name}_sends_per_s={rate:.0f}" for name, rate in figures.items()))


if __name__ == "__main__":
    main()
