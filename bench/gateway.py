"""How many live connections the gateways of one machine hold, what each costs, and how fast
notifications reach them through Kafka, the notification flow and the in-app flow.

    python -m bench.gateway                         # 5,000 connections, 1,000 notifications/s for 10 s (~1 min)
    python -m bench.gateway --connections 50000     # the goal: 50,000 at <= 20 KB each, p99 < 100 ms

The gateways run as deployed: `notifyflow gateway --workers N` on one port (SO_REUSEPORT), N chosen so no
worker nears its descriptor limit. Clients run in processes of their own (bench.gateway_clients, at most
PER_CLIENT connections each), each from its own loopback source address (127.0.0.2, .3, ...) so client
ports do not run out; one WebSocket per user. Notifications are Avro NotificationRequested records
produced to Kafka at --rate a second, each to another connected user, through `flows.notifications` and
the in-app delivery flow (PostgreSQL, Redis publish) to the gateways; latency runs from the request's
created_at to the frame's arrival at the client. Memory per connection is the growth of all gateway
processes' RSS while the connections opened, divided by the connections. Fails (exit 1) when a
connection could not open or a notification never arrived.
Last line: connections=<n> kb_per_conn=<kb> p50_ms=<ms> p99_ms=<ms>
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from rich.console import Console

from bench.gateway_clients import USER
from connectors.kafka import producer
from kernel.requests import notification_request
from kernel.topics import codec_for
from notifyflow.gateway_server import listening
from notifyflow.processes import FlowProcess, delivery_flow
from notifyflow.stack import LocalStack, free_port, stop_process, wait_until

console = Console(stderr=True)
SECRET = "bench-gateway-secret-of-32-bytes"
PER_WORKER = 15_000  # connections a gateway worker is given, well under its 20,000 descriptors
PER_CLIENT = 10_000  # connections a client process holds
WARM_UP = 20  # notifications that must arrive before timing starts: the flows are up and assigned
DRAIN_S = 30.0  # no frame arrived for this long: what has not arrived never will


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def gateway_pids(supervisor: int) -> list[int]:
    """The supervisor and its workers."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [supervisor, *map(int, children)]


class Clients:
    """The client processes, each with its users and source address."""

    def __init__(self, url: str, connections: int, env: dict[str, str]) -> None:
        self.processes = []
        for n, first in enumerate(range(0, connections, PER_CLIENT)):
            count = min(PER_CLIENT, connections - first)
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "bench.gateway_clients", "--url", url, "--first", str(first),
                 "--count", str(count), "--source", f"127.0.0.{2 + n}"],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True))

    def connected(self) -> tuple[int, int]:
        answers = [json.loads(process.stdout.readline() or '{"connected": 0, "failed": -1}')
                   for process in self.processes]
        return sum(a["connected"] for a in answers), sum(a["failed"] for a in answers)

    def received(self) -> int:
        """Notifications that arrived so far, warm-up included."""
        for process in self.processes:
            process.stdin.write("count\n")
            process.stdin.flush()
        return sum(json.loads(process.stdout.readline() or '{"received": 0}')["received"]
                   for process in self.processes)

    def results(self) -> tuple[int, dict[str, float]]:
        held, latencies = 0, {}
        for process in self.processes:
            process.stdin.write("stop\n")
            process.stdin.flush()
        for process in self.processes:
            answer = json.loads(process.stdout.readline() or '{"held": 0, "latencies": {}}')
            held += answer["held"]
            latencies |= answer["latencies"]
        return held, latencies

    def stop(self) -> None:
        for process in self.processes:
            stop_process(process)


def all_listening(port: int, workers: int) -> None:
    if listening(port) != workers:
        raise RuntimeError(f"{listening(port)} of {workers} workers listen")


def stored(database_url: str, prefix: str) -> int:
    """Notifications in the notification center whose ids start with `prefix`."""
    with psycopg.connect(database_url) as connection:
        return connection.execute("SELECT count(*) FROM notifications WHERE id LIKE %s", [f"{prefix}%"]).fetchone()[0]


def send(client, users: list[int], count: int, rate: float, prefix: str) -> list[str]:
    """`count` requests at `rate` a second, each to the next user; returns their ids."""
    codec, ids, started = codec_for("notify.events"), [], time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
        user = USER.format(users[n % len(users)])
        request = notification_request(user_id=user, title=f"Bench {prefix}{n}", body="fan-out", source_app="bench")
        request["id"] = f"{prefix}{n}"
        client.produce("notify.events", key=user.encode(), value=codec.encode(request))
        client.poll(0)
        ids.append(request["id"])
    client.flush(30)
    return ids


def run(urls: dict[str, str], workdir: Path, connections: int, rate: float, seconds: float) -> str:
    env = {**os.environ, **urls, "GATEWAY_JWT_SECRET": SECRET, "NOTIFYFLOW_TENANT_PER_MINUTE": str(10**9),
           "NOTIFYFLOW_SENDER_PER_MINUTE": str(10**9)}
    flows = [FlowProcess(name, workdir / f"recovery-{n}", workdir / f"flow-{n}.log", env=env).start()
             for n, name in enumerate(["notifications", delivery_flow("in_app", "normal")])]
    workers, port = max(1, math.ceil(connections / PER_WORKER)), free_port()
    with open(workdir / "gateway.log", "ab") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "notifyflow.cli", "gateway", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(workers), "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    clients = None
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health").raise_for_status(), "gateway", gateway)
        wait_until(lambda: all_listening(port, workers), "gateway workers", gateway)
        time.sleep(2)
        baseline = sum(rss_kb(pid) for pid in gateway_pids(gateway.pid))
        started = time.monotonic()
        clients = Clients(f"ws://127.0.0.1:{port}", connections, env)
        opened, failed = clients.connected()
        console.print(f"{opened:,} connections to {workers} gateway workers from {len(clients.processes)} client "
                      f"processes in {time.monotonic() - started:.1f} s ({failed} failed)")
        time.sleep(3)  # let subscriptions settle before measuring
        grown = sum(rss_kb(pid) for pid in gateway_pids(gateway.pid)) - baseline
        console.print(f"gateway RSS grew {grown / 1024:,.0f} MB over {workers} workers: "
                      f"{grown / max(1, opened):.1f} KB per connection")
        users = random.Random(7).sample(range(connections), connections)
        kafka = producer(urls["KAFKA_BOOTSTRAP_SERVERS"])
        send(kafka, users[:WARM_UP], WARM_UP, WARM_UP, "warm-")
        deadline = time.monotonic() + 300  # the flows start, and read every connection's presence first
        while stored(urls["DATABASE_URL"], "warm-") < WARM_UP and time.monotonic() < deadline:
            time.sleep(0.5)
        console.print(f"fan-out: {rate:,.0f} notifications/s for {seconds:.0f} s")
        sent = send(kafka, users[WARM_UP:] or users, int(rate * seconds), rate, "bench-")
        arrived, progress_at = 0, time.monotonic()
        while arrived < len(sent) + WARM_UP and time.monotonic() - progress_at < DRAIN_S:
            time.sleep(1)
            if (now := clients.received()) > arrived:
                arrived, progress_at = now, time.monotonic()
        in_center = stored(urls["DATABASE_URL"], "bench-")
        held, latencies = clients.results()
        for flow in flows:
            flow.check()
    finally:
        if clients:
            clients.stop()
        stop_process(gateway)
        with contextlib.suppress(ProcessLookupError):  # workers the supervisor did not stop in time
            os.killpg(gateway.pid, signal.SIGKILL)
        for flow in flows:
            flow.stop()
    missing = [i for i in sent if i not in latencies]
    if failed or missing or held < connections:
        console.print(f"[red]incomplete: {failed} connections failed, {connections - held} closed, "
                      f"{len(missing)} of {len(sent)} notifications never arrived ({in_center} reached the "
                      f"notification center)[/]")
        sys.exit(1)
    timed = sorted(latencies[i] for i in sent)
    p99 = timed[min(len(timed) - 1, int(len(timed) * 0.99))]
    console.print(f"p90 {timed[int(len(timed) * 0.9)]:.1f} ms, max {timed[-1]:.1f} ms")
    tenths = [statistics.median(latencies[i] for i in sent[n * len(sent) // 10:(n + 1) * len(sent) // 10])
              for n in range(10)]  # a queue that builds up shows as a rising median
    console.print("median by tenth of the run (ms): " + " ".join(f"{m:.0f}" for m in tenths))
    return (f"connections={held} kb_per_conn={grown / connections:.1f} p50_ms={statistics.median(timed):.1f} "
            f"p99_ms={p99:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=5_000, help="the goal is 50000")
    parser.add_argument("--rate", type=float, default=1_000.0, help="notifications a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long notifications are sent")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop what was started on the way out
    with LocalStack(on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack, \
            tempfile.TemporaryDirectory(prefix="bench-gateway-") as scratch:
        line = run(stack.urls, Path(scratch), args.connections, args.rate, args.seconds)
    print(line)


if __name__ == "__main__":
    main()
