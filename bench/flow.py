"""Throughput of the notification flow against a bare Kafka loop over the same events.

    python -m bench.flow [--events N]

Both runs read the same pre-produced mixed workload from notify.events on the local stack.
The ceiling is consume -> decode -> encode -> produce and nothing else; the flow is
`bytewax.run flows.notifications:flow` with recovery on. Each rate is measured from its
first to its last output record's broker timestamp, so process start-up is not counted.
Last line: flow_eps=<events/s> ceiling_eps=<events/s> ratio=<flow/ceiling>
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors.kafka import TopicReader, ensure_topics, produce_all, producer
from kernel.requests import notification_request, routing_key
from kernel.topics import TopicSpec, codec_for
from notifyflow.processes import FlowProcess
from notifyflow.stack import LocalStack

console = Console(stderr=True)
CATEGORIES = ("messages", "messages", "social", "ci", "security", "marketing", "general")
PRIORITIES = ("normal", "normal", "normal", "high", "low", "critical")


def workload(events: int, users: int, seed: int = 7) -> tuple[list[tuple[bytes, bytes]], list, list]:
    """Mixed requests: duplicates that merge, consent and preference drops, fan-out, invalid input."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    codec = codec_for("notify.events")
    user_ids = [f"user-{n}" for n in range(users)]
    prefs = [{"user_id": u, "updated_at": now, "deleted": False, "enabled": rng.random() > 0.05,
              "quiet_hours": None, "digest": None, "channels": {}, "categories": {},
              "marketing_consent": rng.random() > 0.5, "email": f"{u}@example.com", "phone": None,
              "locale": rng.choice([None, "en", "fr"]), "timezone": "Europe/Paris"} for u in user_ids]
    devices = [{"user_id": u, "device_id": f"{u}-phone", "platform": "android", "token": f"token-{u}",
                "web_push": None, "app_version": "5.1", "registered_at": now, "active": True}
               for u in user_ids if rng.random() > 0.3]
    records = []
    for n in range(events):
        user = rng.choice(user_ids)
        category = rng.choice(CATEGORIES)
        title = f"Update {rng.randrange(events // 4)}" if rng.random() > 0.2 else "You have a new message"
        request = notification_request(
            user_id=user, title=title, body="Something happened", category=category,
            priority=rng.choice(PRIORITIES), type="marketing" if category == "marketing" else "info",
            content={"title": title, "body": "Something happened", "image_url": None, "icon": None, "badge": None,
                     "actions": []},
            metadata={"created_at": now - timedelta(seconds=events - n), "expires_at": None, "deep_link": None,
                      "payload": {}, "source_app": "bench", "campaign_id": None},
            audience=None, channels=[], scheduled_at=None, idempotency_key=None, locale=None, template_id=None,
            template_vars={})
        if n % 100 == 0:  # fan-out to a handful of users
            request.update(user_id=None, audience={"user_ids": rng.sample(user_ids, 5), "segment": None, "topic": None})
        value = codec.encode(request)
        if n % 97 == 0:  # truncated: must land in the dead-letter topic
            value = value[: len(value) // 2]
        records.append((routing_key(request), value))
    return records, prefs, devices


def produce_inputs(bootstrap: str, records, prefs, devices) -> None:
    client = producer(bootstrap)
    for topic, rows in (("notify.preferences", prefs), ("notify.devices", devices)):
        codec = codec_for(topic)
        produce_all(client, topic, [(routing_key(r), codec.encode(r)) for r in rows])
    produce_all(client, "notify.events", records)


def ceiling(bootstrap: str, events: int) -> float:
    """consume -> decode -> encode -> produce over the same events, batch by batch."""
    ensure_topics(bootstrap, [TopicSpec("bench.ceiling", "NotificationRequested")])
    codec, out = codec_for("notify.events"), producer(bootstrap)
    done, started = 0, None
    with TopicReader(bootstrap, ["notify.events"]) as reader:
        while done < events:
            batch = reader.poll(1.0, max_messages=1000)
            started = started or time.perf_counter()
            for message in batch:
                try:
                    value = codec.encode(codec.decode(message.value()))
                except ValueError:
                    value = message.value()
                out.produce("bench.ceiling", key=message.key(), value=value)
                out.poll(0)
            done += len(batch)
    out.flush(30)
    return events / (time.perf_counter() - started)


def flow_rate(urls: dict[str, str], events: int, workdir: Path, budget_s: float, processes: int) -> tuple[float, int]:
    """Runs the flow and waits until its outputs stop; rate from first to last output timestamp."""
    bootstrap = urls["KAFKA_BOOTSTRAP_SERVERS"]
    first = last = None
    count, quiet_since = 0, time.monotonic()
    with FlowProcess("notifications", workdir / "recovery", workdir / "flow.log", processes=processes,
                     snapshot_s=5, env=urls) as flow, \
            TopicReader(bootstrap, ["notify.status", "notify.dlq"]) as reader, \
            Progress(TextColumn("flow"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     console=console, transient=True) as bar:
        task = bar.add_task("flow", total=events)
        deadline = time.monotonic() + budget_s
        while (first is None or time.monotonic() - quiet_since < 3) and time.monotonic() < deadline:
            batch = reader.poll(0.5)
            if not batch:
                flow.check()
                continue
            quiet_since = time.monotonic()
            for message in batch:
                kind, stamp = message.timestamp()
                if kind != TIMESTAMP_NOT_AVAILABLE:
                    first = stamp if first is None else min(first, stamp)
                    last = stamp if last is None else max(last, stamp)
            count += len(batch)
            bar.update(task, completed=min(count, events))
    if first is None or last == first:
        raise SystemExit("the flow produced no output; see " + str(workdir / "flow.log"))
    return events / ((last - first) / 1000), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--processes", type=int, default=1, help="bytewax processes of the flow")
    parser.add_argument("--budget", type=float, default=35.0, help="seconds the flow run may take at most")
    args = parser.parse_args()
    with LocalStack(on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack, \
            tempfile.TemporaryDirectory(prefix="bench-flow-") as scratch:
        bootstrap = stack.urls["KAFKA_BOOTSTRAP_SERVERS"]
        records, prefs, devices = workload(args.events, args.users)
        produce_inputs(bootstrap, records, prefs, devices)
        ceiling_eps = ceiling(bootstrap, args.events)
        console.print(f"ceiling: {ceiling_eps:,.0f} events/s")
        flow_eps, outputs = flow_rate(stack.urls, args.events, Path(scratch), args.budget, args.processes)
        console.print(f"flow: {flow_eps:,.0f} events/s ({outputs:,} statuses and dead letters)")
    print(f"flow_eps={flow_eps:.0f} ceiling_eps={ceiling_eps:.0f} ratio={flow_eps / ceiling_eps:.2f}")


if __name__ == "__main__":
    main()
