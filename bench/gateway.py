"""How many live connections one gateway process holds, what each costs, how fast fan-out is.

    python -m bench.gateway [--connections N] [--messages M]

The gateway runs as deployed (`notifyflow gateway`), in its own process (so its memory is measured alone);
this process opens N WebSockets (one per user), then publishes M notifications to random
connected users through Redis, as the in-app sink does, and times publish -> receive.
Last line: connections=<n> kb_per_conn=<kb> p50_ms=<ms> p99_ms=<ms>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis.asyncio as aioredis
import websockets
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from connectors.redis import user_channel
from gateway.auth import issue_token
from notifyflow.stack import LocalStack, free_port, stop_process, wait_until

console = Console(stderr=True)
SECRET = "bench-gateway-secret-of-32-bytes"
SPARE_DESCRIPTORS = 100  # the gateway's own: listener, Redis, PostgreSQL pool, Kafka, epoll


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_file_limit(wanted: int) -> int:
    """Enough descriptors for every socket, here and in the gateway (which inherits the limit);
    raising the hard limit needs root, else the hard limit caps the run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), max(hard, wanted)))
    except (ValueError, PermissionError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, wanted), hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def connect_all(url: str, users: list[str], received: dict, concurrency: int = 200) -> list:
    sockets, gate = [], asyncio.Semaphore(concurrency)

    async def one(user: str):
        async with gate:
            socket = await websockets.connect(f"{url}/ws?token={issue_token(user, SECRET)}&device=bench",
                                              max_size=2**16, ping_interval=None, open_timeout=60)
            sockets.append(socket)
            asyncio.create_task(listen(socket, received))
            bar.advance(task)

    with Progress(TextColumn("connecting"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("connecting", total=len(users))
        await asyncio.gather(*(one(user) for user in users))
    return sockets


async def listen(socket, received: dict) -> None:
    try:
        async for raw in socket:
            event = json.loads(raw)
            if event.get("event") == "notification.created":
                received[event["notification"]["id"]] = time.time()
    except websockets.ConnectionClosed:
        pass


async def fan_out(redis_url: str, users: list[str], messages: int, received: dict) -> list[float]:
    redis = aioredis.from_url(redis_url)
    sent: dict[str, float] = {}
    rng = random.Random(7)
    for n in range(messages):
        user, notification_id = rng.choice(users), f"bench-{n}"
        event = {"event": "notification.created", "event_seq": n + 1, "notification": {
            "id": notification_id, "title": "Bench", "body": "fan-out", "created_at": "2026-01-01T00:00:00+00:00"}}
        sent[notification_id] = time.time()
        await redis.publish(user_channel("default", user), json.dumps(event))
        if n % 50 == 49:
            await asyncio.sleep(0.01)  # a steady stream, not one burst
    deadline = time.monotonic() + 10
    while len(received) < messages and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await redis.aclose()
    if len(received) < messages:
        console.print(f"[yellow]warning: {messages - len(received)} of {messages} messages never arrived[/]")
    return [(received[i] - sent[i]) * 1000 for i in sent if i in received]


async def run(urls: dict[str, str], connections: int, messages: int) -> str:
    port = free_port()
    env = {**os.environ, **urls, "GATEWAY_JWT_SECRET": SECRET}
    gateway = subprocess.Popen(
        [sys.executable, "-m", "notifyflow.cli", "gateway", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        env=env, start_new_session=True)
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{port}/health").raise_for_status(), "gateway", gateway)
        await asyncio.sleep(1)
        baseline = rss_kb(gateway.pid)
        users = [f"bench-user-{n}" for n in range(connections)]
        received: dict[str, float] = {}
        started = time.monotonic()
        sockets = await connect_all(f"ws://127.0.0.1:{port}", users, received)
        console.print(f"{len(sockets):,} connections in {time.monotonic() - started:.1f} s")
        await asyncio.sleep(2)  # let subscriptions settle before measuring
        per_connection = (rss_kb(gateway.pid) - baseline) / len(sockets)
        latencies = sorted(await fan_out(urls["REDIS_URL"], users, messages, received))
        held = sum(1 for socket in sockets if socket.state.name == "OPEN")
        await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
    finally:
        stop_process(gateway)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return f"connections={held} kb_per_conn={per_connection:.1f} p50_ms={p50:.1f} p99_ms={p99:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=5000, help="default fits ~50 s; the goal is 20000")
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    limit = raise_file_limit(args.connections + 1024)
    if args.connections > limit - SPARE_DESCRIPTORS:
        console.print(f"[yellow]warning: the descriptor limit here is {limit}: "
                      f"holding {limit - SPARE_DESCRIPTORS} connections, not {args.connections}[/]")
        args.connections = limit - SPARE_DESCRIPTORS
    with LocalStack(on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack:
        line = asyncio.run(run(stack.urls, args.connections, args.messages))
    print(line)


if __name__ == "__main__":
    main()
