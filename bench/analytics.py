"""Ingestion rate of the analytics flow into ClickHouse, on the local stack.

    python -m bench.analytics [--events N]

Pre-produces a mix of delivery statuses and engagement events, then runs the analytics process the
way it is deployed (`notifyflow analytics`: recovery on, batched inserts, per-minute rollups that
ClickHouse aggregates in every inserted part) and waits until ClickHouse holds every row. The rate is measured from the
first to the last row's ingestion time as ClickHouse stored it, so process start-up is not counted.
Last line: rows_per_s=<rows/s>
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.kafka import produce_all, producer
from kernel.topics import codec_for
from notifyflow.processes import AnalyticsProcess
from notifyflow.stack import LocalStack

console = Console(stderr=True)
STATES = ("requested", "requested", "sent", "sent", "delivered", "delivered", "failed", "retried", "merged",
          "rate_limited", "deferred", "digested")
ACTIONS = ("opened", "opened", "clicked", "dismissed", "unsubscribed", "read")


def workload(events: int, users: int, seed: int = 11) -> dict[str, list[tuple[bytes, bytes]]]:
    """Four statuses to one engagement event, over a few campaigns with two variants each."""
    rng, now = random.Random(seed), datetime.now(UTC)
    statuses, engagements = codec_for("notify.status"), codec_for("notify.engagement")
    out: dict[str, list[tuple[bytes, bytes]]] = {"notify.status": [], "notify.engagement": []}
    for n in range(events):
        user, campaign = f"user-{rng.randrange(users)}", rng.choice([None, None, "spring", "launch"])
        common = {"notification_id": f"n{n // 3}", "user_id": user, "channel": rng.choice(["push", "email", "in_app"]),
                  "campaign_id": campaign, "variant": rng.choice("AB") if campaign else None,
                  "category": "marketing" if campaign else rng.choice(["messages", "ci", "security"])}
        at = now - timedelta(milliseconds=events - n)
        if n % 5 == 4:
            out["notify.engagement"].append((user.encode(), engagements.encode({
                **common, "action": rng.choice(ACTIONS), "action_id": None, "device_id": None, "at": at})))
        else:
            out["notify.status"].append((user.encode(), statuses.encode({
                **common, "device_id": None, "status": rng.choice(STATES), "attempt": 1, "provider": "fcm",
                "reason": None, "platform": "android", "created_at": at - timedelta(milliseconds=rng.randrange(20, 400)),
                "at": at, "tenant": "bench"})))
    return out


def ingest(urls: dict[str, str], events: int, workdir: Path, budget_s: float) -> float:
    """Runs the analytics process until ClickHouse holds every event; rows/s between first and last insert."""
    count, deadline = 0, time.monotonic() + budget_s
    with AnalyticsProcess(workdir / "recovery", workdir / "analytics.log", env=urls) as analytics, \
            Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     console=console, transient=True) as bar:
        task = bar.add_task("ingest", total=events)
        while count < events:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {count:,} of {events:,} rows after {budget_s:.0f}s; see {analytics.log}")
            time.sleep(0.5)
            analytics.check()
            [[count]] = analytics.sql("SELECT count() FROM notifyflow.events_raw")
            bar.update(task, completed=count)
        [[seconds]] = analytics.sql("SELECT dateDiff('millisecond', min(ingested_at), max(ingested_at)) / 1000"
                                    " FROM notifyflow.events_raw")
    return events / max(seconds, 0.001)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--budget", type=float, default=35.0, help="seconds the ingestion may take at most")
    args = parser.parse_args()
    with LocalStack(on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack, \
            tempfile.TemporaryDirectory(prefix="bench-analytics-") as scratch:
        with console.status(f"producing {args.events:,} statuses and engagement events"):
            client = producer(stack.urls["KAFKA_BOOTSTRAP_SERVERS"])
            for topic, records in workload(args.events, args.users).items():
                produce_all(client, topic, records)
        rate = ingest(stack.urls, args.events, Path(scratch), args.budget)
        console.print(f"analytics: {rate:,.0f} rows/s into ClickHouse (raw rows and per-minute rollups)")
    print(f"rows_per_s={rate:.0f}")


if __name__ == "__main__":
    main()
