"""Sends per second per channel, through the same code the delivery flows run, against the
local protocol peers (loopback; the figures measure our side, not a provider's).

    python -m bench.delivery [--jobs N]

Last line: <channel>_sends_per_s=<n> for each channel.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from connectors import postgres, redis
from infra.peers.webhook import WebhookReceiver
from infra.stack import LocalStack
from infra.topics import codec_for, outbox_topic
from sinks.circuit import Breakers
from sinks.claims import RedisClaims
from sinks.engine import Delivery
from sinks.in_app import InAppSink
from sinks.webhook import WebhookProvider

console = Console(stderr=True)
BATCH = 500


def jobs(channel: str, count: int, **fields) -> list[dict]:
    codec, run = codec_for(outbox_topic(channel, "normal")), uuid.uuid4().hex[:8]
    out = []
    for n in range(count):
        notification_id = f"bench-{run}-{n}"
        out.append(codec.decode(codec.encode({
            "job_id": f"{notification_id}:u{n % 500}:{channel}:0", "notification_id": notification_id,
            "revision": 0, "request_ids": [notification_id], "user_id": f"u{n % 500}", "tenant": "bench",
            "channel": channel, "lane": "normal", "kind": "single", "priority": "normal", "type": "info",
            "category": "ci", "title": f"Build #{n} passed", "body": "All green", "html_body": "All green",
            "locale": "en", "collapse_key": notification_id, "created_at": datetime.now(UTC), **fields})))
    return out


@contextmanager
def webhook(urls: dict[str, str]):
    with WebhookReceiver() as receiver, psycopg.connect(urls["DATABASE_URL"], autocommit=True) as db:
        db.execute("INSERT INTO webhook_endpoints (tenant, url, secret) VALUES ('bench', %s, %s) "
                   "ON CONFLICT (tenant) DO UPDATE SET url = EXCLUDED.url, secret = EXCLUDED.secret",
                   (receiver.url, receiver.secret))
        delivery = Delivery(WebhookProvider(postgres.WebhookEndpoints(urls["DATABASE_URL"])),
                            RedisClaims(redis.client(urls["REDIS_URL"])), Breakers(), rng=random.Random(1))
        state = delivery.new_state()
        yield "webhook", lambda batch: delivery.process(state, batch, datetime.now(UTC))


@contextmanager
def in_app(urls: dict[str, str]):
    sink = InAppSink(postgres.connect(urls["DATABASE_URL"]), redis.client(urls["REDIS_URL"]))
    yield "in_app", lambda batch: sink.deliver(batch, datetime.now(UTC))


CHANNELS = {"in_app": in_app, "webhook": webhook}


def measure(send, batch_jobs: list[dict], label: str) -> float:
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=len(batch_jobs))
        started = time.perf_counter()
        for start in range(0, len(batch_jobs), BATCH):
            send(batch_jobs[start:start + BATCH])
            bar.advance(task, min(BATCH, len(batch_jobs) - start))
        return len(batch_jobs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per channel")
    args = parser.parse_args()
    figures = {}
    with LocalStack(on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack:
        for channel, setup in CHANNELS.items():
            with setup(stack.urls) as (name, send):
                figures[name] = measure(send, jobs(channel, args.jobs), name)
                console.print(f"{name}: {figures[name]:,.0f} sends/s")
    print(" ".join(f"{name}_sends_per_s={rate:.0f}" for name, rate in figures.items()))


if __name__ == "__main__":
    main()
