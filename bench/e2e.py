"""From an upstream team's Kafka producer to the user's screen: latency of the whole path, as deployed.

    python -m bench.e2e [--users N] [--rate R] [--seconds S] [--browser]

The local stack, the notification flow and the in-app delivery flows of every lane run with
`bytewax.run`, one gateway with `notifyflow gateway`; this process connects N users over
WebSocket (default 1,000), then a plain confluent-kafka producer writes Avro NotificationRequested
records (the public schema) to notify.events at R requests a second (default 1,000) for S seconds
(default 30), spread over the users round robin so no cap applies. Latency is each request's
`created_at` (stamped when it is produced) to its frame's arrival here; both clocks are this
machine's. Every request is accounted for: one that never arrives is counted, and the benchmark
fails naming how many and which.

Beside the hops, it prints where the CPU went while the requests were in flight: each process
the run started (the broker, PostgreSQL, Valkey, the flows, the gateway, this process with its
WebSocket clients and producer), in CPU seconds, per request and in cores (bench/cpu.py).

`--browser` also measures the toast render in Chromium (the page's own performance marks, from a
frame's arrival to the toast's next animation frame) under a burst of 50 notifications with 5
toasts visible, and adds `toast_p99_ms=`.

Last line: rate=<requests/s> sent=<n> received=<n> p50_ms=<ms> p99_ms=<ms> max_ms=<ms>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import websockets
from confluent_kafka import Producer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from bench.cpu import ProcessTreeCpu, cpu_table
from bench.gateway_clients import raise_file_limit
from connectors.kafka import TopicReader, produce_all, producer
from gateway.auth import issue_token
from kernel.requests import preferences_record, routing_key
from kernel.topics import EVENTS, LANES, PREFERENCES, STATUS, codec_for
from notifyflow.processes import FlowProcess, delivery_flow
from notifyflow.stack import LocalStack, free_port, stop_process, wait_until
from schemas import AvroCodec

console = Console(stderr=True)
SECRET = "bench-e2e-secret-of-32-bytes-long"
SNAPSHOT_S = 5  # as deployed (deploy/compose.yaml, BYTEWAX_SNAPSHOT_INTERVAL)
# The bench's one sender sends what a whole deployment would: lift the ingestion limits for it.
FLOW_ENV = {"NOTIFYFLOW_TENANT_PER_MINUTE": "10000000", "NOTIFYFLOW_SENDER_PER_MINUTE": "10000000"}


def request(user: str, n: int) -> dict:
    """A complete NotificationRequested as an upstream team writes it from the .avsc: every field."""
    return {"id": str(uuid.uuid4()), "tenant": "default", "user_id": user, "audience": None, "type": "info",
            "category": "messages", "priority": "normal",
            "content": {"title": f"Message {n}", "body": "from bench.e2e", "image_url": None, "icon": None,
                        "badge": None, "actions": []},
            "metadata": {"created_at": datetime.now(UTC), "expires_at": None, "deep_link": None, "payload": {},
                         "source_app": "bench-e2e", "campaign_id": None},
            "channels": ["in_app"], "scheduled_at": None, "idempotency_key": None, "locale": None,
            "template_id": None, "template_vars": {}}


def produce_steadily(bootstrap: str, users: list[str], rate: int, seconds: float,
                     sent: dict[str, datetime], failed: list) -> None:
    """At `rate` a second, in ticks of 10 ms, stamping each request as it is produced."""
    client = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 1})
    codec, total, started = AvroCodec("NotificationRequested"), int(rate * seconds), time.monotonic()
    for n in range(total):
        due = started + n / rate
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        record = request(users[n % len(users)], n)
        sent[record["id"]] = record["metadata"]["created_at"]
        client.produce(EVENTS, key=routing_key(record), value=codec.encode(record),
                       on_delivery=lambda error, _m: error and failed.append(error))
        client.poll(0)
    client.flush(30)


async def listen(socket, received: dict[str, float]) -> None:
    try:
        async for raw in socket:
            event = json.loads(raw)
            if event.get("event") == "notification.created":
                received.setdefault(event["notification"]["id"], time.time())
    except websockets.ConnectionClosed:
        pass


async def connect(url: str, users: list[str], received: dict[str, float]) -> list:
    gate, sockets = asyncio.Semaphore(100), []

    async def one(user: str) -> None:
        async with gate:
            socket = await websockets.connect(f"{url}/ws?token={issue_token(user, SECRET)}&device=bench",
                                              ping_interval=None, open_timeout=60, max_size=2**20)
            sockets.append(socket)
            asyncio.get_running_loop().create_task(listen(socket, received))

    await asyncio.gather(*(one(user) for user in users))
    return sockets


async def measure(urls: dict[str, str], gateway_url: str, users: list[str], rate: int, seconds: float) -> dict:
    received: dict[str, float] = {}
    sockets = await connect(gateway_url.replace("http", "ws"), users, received)
    await asyncio.sleep(2)  # presence settles; the flows see everyone online
    sent: dict[str, datetime] = {}
    failed: list = []
    producing = threading.Thread(target=produce_steadily, args=(urls["KAFKA_BOOTSTRAP_SERVERS"], users, rate,
                                                                seconds, sent, failed), daemon=True)
    cpu = ProcessTreeCpu()
    producing.start()
    total = int(rate * seconds)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("requests on screen", total=total)
        quiet_since = time.monotonic()
        while producing.is_alive() or (len(received) < total and time.monotonic() - quiet_since < 15):
            before = len(received)
            await asyncio.sleep(0.25)
            bar.update(task, completed=len(received))
            if len(received) > before:
                quiet_since = time.monotonic()
    cpu_used, cpu_wall_s = cpu.used()
    await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
    console.print(cpu_table(cpu_used, cpu_wall_s, len(sent)))
    return {"sent": sent, "received": received, "failed": failed, "total": total}


def show_hops(bootstrap: str, result: dict) -> None:
    """Where the time goes, from the statuses the flows wrote: the notification flow's `requested`
    and the in-app sink's `delivered` split the path into its three hops."""
    requested, delivered, codec = {}, {}, codec_for(STATUS)
    with TopicReader(bootstrap, [STATUS]) as reader:
        deadline = time.monotonic() + 30
        while len(delivered) < len(result["received"]) and time.monotonic() < deadline:
            for message in reader.poll(0.5):
                status = codec.decode(message.value())
                if status["notification_id"] in result["sent"]:
                    at = {"requested": requested, "delivered": delivered}.get(status["status"])
                    if at is not None:
                        at.setdefault(status["notification_id"], status["at"].timestamp())
    hops = {"producer -> notification flow decided": [], "-> in-app flow stored and published": [],
            "-> gateway -> frame on the socket": []}
    for notification_id, created in result["sent"].items():
        if notification_id in delivered and notification_id in requested and notification_id in result["received"]:
            marks = [created.timestamp(), requested[notification_id], delivered[notification_id],
                     result["received"][notification_id]]
            for hop, (start, end) in zip(hops.values(), zip(marks, marks[1:])):
                hop.append((end - start) * 1000)
    table = Table("hop", "p50 ms", "p99 ms", title="where the time goes (from the flows' statuses)")
    for name, values in hops.items():
        values.sort()
        if values:
            table.add_row(name, f"{percentile(values, 0.5):.1f}", f"{percentile(values, 0.99):.1f}")
    console.print(table)


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def run(args: argparse.Namespace) -> str:
    if raise_file_limit() < args.users + 1024:
        sys.exit(f"{args.users} users need {args.users + 1024} descriptors; this process may have fewer")
    with LocalStack(on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack, ExitStack() as running, \
            tempfile.TemporaryDirectory(prefix="bench-e2e-") as scratch:
        os.environ.update(stack.urls)
        work, users = Path(scratch), [f"e2e-{n}" for n in range(args.users)]
        codec = codec_for(PREFERENCES)
        produce_all(producer(stack.urls["KAFKA_BOOTSTRAP_SERVERS"]), PREFERENCES,
                    [(routing_key(r), codec.encode(r)) for r in map(preferences_record, users)])
        with console.status("starting the notification flow, the in-app delivery flows and the gateway"):
            flows = [FlowProcess("notifications", work / "n", work / "notifications.log", env=FLOW_ENV,
                                 snapshot_s=SNAPSHOT_S)]
            flows += [FlowProcess(delivery_flow("in_app", lane), work / lane, work / f"in-app-{lane}.log",
                                  snapshot_s=SNAPSHOT_S) for lane in LANES]
            for flow in flows:
                running.enter_context(flow)
            port = free_port()
            gateway = subprocess.Popen(
                [sys.executable, "-m", "notifyflow.cli", "gateway", "--port", str(port), "--log-level", "warning",
                 *(["--demo"] if args.browser else [])],
                env={**os.environ, "GATEWAY_JWT_SECRET": SECRET}, start_new_session=True)
            running.callback(stop_process, gateway)
            wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health").raise_for_status(), "gateway", gateway)
            time.sleep(3)  # the flows read the users' preferences first: nothing orders two topics
        result = asyncio.run(measure(stack.urls, f"http://127.0.0.1:{port}", users, args.rate, args.seconds))
        for flow in flows:
            flow.check()
        show_hops(stack.urls["KAFKA_BOOTSTRAP_SERVERS"], result)
        toast = None
        if args.browser:
            from bench.toast_render import toast_render_p99
            toast = toast_render_p99(f"http://127.0.0.1:{port}", stack.urls["REDIS_URL"], console)
    return report(result, args.rate, toast)


def report(result: dict, rate: int, toast: float | None) -> str:
    sent, received = result["sent"], result["received"]
    if result["failed"] or len(sent) < result["total"]:
        sys.exit(f"the producer could not send {result['total'] - len(sent) + len(result['failed'])} requests: "
                 f"{result['failed'][:3]}")
    latencies = sorted((received[i] - created.timestamp()) * 1000 for i, created in sent.items() if i in received)
    missing = [i for i in sent if i not in received]
    line = (f"rate={rate} sent={len(sent)} received={len(received)} p50_ms={percentile(latencies, 0.5):.1f} "
            f"p99_ms={percentile(latencies, 0.99):.1f} max_ms={latencies[-1]:.1f}")
    if toast is not None:
        line += f" toast_p99_ms={toast:.1f}"
    if missing:
        print(line)
        sys.exit(f"{len(missing)} of {len(sent)} requests never reached the screen, e.g. {missing[:5]}")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="users connected over WebSocket")
    parser.add_argument("--rate", type=int, default=1000, help="requests a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the producer sends")
    parser.add_argument("--browser", action="store_true", help="also measure the toast render in Chromium")
    print(run(parser.parse_args()))


if __name__ == "__main__":
    main()
