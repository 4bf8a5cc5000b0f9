"""Ingestion rate of the analytics flow into ClickHouse, on the local stack, beside the engine's
bare insert rate of the same rows.

    python -m bench.analytics [--events N]

Pre-produces a mix of delivery statuses and engagement events, then runs the analytics process the
way it is deployed (`notifyflow analytics`: recovery on, batched inserts, per-minute rollups that
ClickHouse aggregates in every inserted part). The rate runs from the moment the flow decoded its
first record (the earliest `ingested_at`) to the moment ClickHouse holds every row (its own clock,
read by polling every POLL_S), so process start-up is not counted and the wait of the last batch
is. Every event must be stored exactly once (rows and distinct source offsets), or the benchmark
fails instead of printing a figure.

Then the same events, turned into rows by analytics.rows, go into a fresh chDB directory from a plain
loop in this process: the same client, columns and column types, in inserts of the flow's
BATCH_ROWS; only the loop is timed. That is what the engine takes when nothing else runs.

Last line: rows_per_s=<flow> bare_insert_rows_per_s=<plain loop>
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

from analytics.pseudonym import UserKeys
from analytics.rows import COLUMNS, Consumed, Rows
from analytics.store import RAW, insert_types
from connectors import clickhouse
from connectors.kafka import produce_all, producer
from flows.analytics import BATCH_ROWS
from kernel.topics import ENGAGEMENT, STATUS, codec_for
from notifyflow.migrate import migrate_clickhouse
from notifyflow.processes import AnalyticsProcess
from notifyflow.stack import LocalStack

console = Console(stderr=True)
POLL_S = 0.1
STATES = ("requested", "requested", "sent", "sent", "delivered", "delivered", "failed", "retried", "merged",
          "rate_limited", "deferred", "digested")
ACTIONS = ("opened", "opened", "clicked", "dismissed", "unsubscribed", "read")


def workload(events: int, users: int, seed: int = 11) -> dict[str, list[tuple[bytes, bytes]]]:
    """Four statuses to one engagement event, over a few campaigns with two variants each."""
    rng, now = random.Random(seed), datetime.now(UTC)
    statuses, engagements = codec_for(STATUS), codec_for(ENGAGEMENT)
    out: dict[str, list[tuple[bytes, bytes]]] = {STATUS: [], ENGAGEMENT: []}
    for n in range(events):
        user, campaign = f"user-{rng.randrange(users)}", rng.choice([None, None, "spring", "launch"])
        common = {"notification_id": f"n{n // 3}", "user_id": user, "channel": rng.choice(["push", "email", "in_app"]),
                  "campaign_id": campaign, "variant": rng.choice("AB") if campaign else None,
                  "category": "marketing" if campaign else rng.choice(["messages", "ci", "security"])}
        at = now - timedelta(milliseconds=events - n)
        if n % 5 == 4:
            out[ENGAGEMENT].append((user.encode(), engagements.encode({
                **common, "action": rng.choice(ACTIONS), "action_id": None, "device_id": None, "at": at})))
        else:
            out[STATUS].append((user.encode(), statuses.encode({
                **common, "device_id": None, "status": rng.choice(STATES), "attempt": 1, "provider": "fcm",
                "reason": None, "platform": "android", "at": at, "tenant": "bench",
                "created_at": at - timedelta(milliseconds=rng.randrange(20, 400))})))
    return out


def ingest(urls: dict[str, str], events: int, workdir: Path, budget_s: float) -> float:
    """Runs the analytics process until ClickHouse holds every event; rows/s from the first decode to the
    last row stored."""
    deadline = time.monotonic() + budget_s
    with AnalyticsProcess(workdir / "recovery", workdir / "analytics.log", env=urls) as analytics, \
            Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     console=console, transient=True) as bar:
        task = bar.add_task("ingest", total=events)
        while True:  # count() is answered from the parts' metadata: polling costs the process little
            [[count, now_ms]] = analytics.sql(
                "SELECT count(), toUnixTimestamp64Milli(now64(3)) FROM notifyflow.events_raw")
            bar.update(task, completed=count)
            if count >= events:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {count:,} of {events:,} rows after {budget_s:.0f}s; see {analytics.log}")
            analytics.check()
            time.sleep(POLL_S)
        [[stored, distinct, first_ms]] = analytics.sql(
            "SELECT count(), uniqExact(source_topic, source_partition, source_offset),"
            " toUnixTimestamp64Milli(min(ingested_at)) FROM notifyflow.events_raw")
    if stored != events or distinct != events:
        raise SystemExit(f"{stored:,} rows from {distinct:,} distinct source offsets for {events:,} events")
    return events / ((now_ms - first_ms) / 1000)


def bare_insert(produced: dict[str, list[tuple[bytes, bytes]]], workdir: Path) -> float:
    """The same events as rows, inserted by a plain loop into a fresh chDB directory; rows/s of the loop."""
    rows = [row for item in Rows(UserKeys(b"bench-analytics-secret")).items(
        [Consumed(topic, 0, offset, key, value) for topic, records in produced.items()
         for offset, (key, value) in enumerate(records)], datetime.now(UTC)) for row in item["rows"]]
    columns = list(zip(*rows))
    url = f"chdb://{workdir / 'bare'}"
    migrate_clickhouse(url)
    client = clickhouse.client(url)
    types = insert_types(client)
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH_ROWS):
        client.insert(RAW, [column[start:start + BATCH_ROWS] for column in columns], column_names=COLUMNS,
                      column_type_names=types, column_oriented=True)
    seconds = time.perf_counter() - started
    if (stored := client.query(f"SELECT count() FROM {RAW}").result_rows[0][0]) != len(rows):
        raise SystemExit(f"the plain loop stored {stored:,} of {len(rows):,} rows")
    return len(rows) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds the ingestion may take at most")
    args = parser.parse_args()
    with LocalStack(on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack, \
            tempfile.TemporaryDirectory(prefix="bench-analytics-") as scratch:
        with console.status(f"producing {args.events:,} statuses and engagement events"):
            client = producer(stack.urls["KAFKA_BOOTSTRAP_SERVERS"])
            produced = workload(args.events, args.users)
            for topic, records in produced.items():
                produce_all(client, topic, records)
        rate = ingest(stack.urls, args.events, Path(scratch), args.budget)
        console.print(f"analytics: {rate:,.0f} rows/s stored in ClickHouse (raw rows and per-minute rollups)")
    with tempfile.TemporaryDirectory(prefix="bench-analytics-bare-") as scratch, \
            console.status("the same rows from a plain insert loop"):
        bare = bare_insert(produced, Path(scratch))
    console.print(f"bare insert: {bare:,.0f} rows/s (plain loop, same client and columns, {BATCH_ROWS:,} a batch)")
    print(f"rows_per_s={rate:.0f} bare_insert_rows_per_s={bare:.0f}")


if __name__ == "__main__":
    main()
