"""A device that stops reading costs the gateway bounded memory and is cut off, while the others
keep receiving: the gateway runs as deployed (`notifyflow gateway`, its own process, so its memory
is measured alone); one client opens a WebSocket and never reads again, another reads everything;
20 MB of events go to the first, 2,000 to the second."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis.asyncio as aioredis
import websockets
from flow_harness import unique
from gateway_harness import GATEWAY_SECRET

from connectors.redis import user_channel
from gateway.auth import issue_token
from kernel.requests import DEFAULT_TENANT
from notifyflow.stack import free_port, stop_process, wait_until

STALLED_EVENTS, READER_EVENTS, BODY = 20_000, 2_000, "x" * 1000


def rss_mb(pid: int) -> float:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def websocket_connections(base: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith('notifyflow_gateway_connections{transport="websocket"}'):
            return float(line.split()[-1])
    return 0.0


def stalled_client(port: int, user: str) -> socket.socket:
    """A WebSocket handshake, then nothing read ever again (a small receive buffer fills at once)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /ws?token={issue_token(user, GATEWAY_SECRET)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    return sock


def event(user: str, seq: int) -> str:
    return json.dumps({"event": "notification.created", "event_seq": seq,
                       "notification": {"id": f"{user}-{seq}", "title": "Slow", "body": BODY,
                                        "created_at": "2026-01-01T00:00:00+00:00"}})


async def publish_and_watch(redis_url: str, pid: int, stalled: str, reader) -> tuple[list[int], float]:
    """Publishes to both users (as the in-app sink does) while the reader reads; (seqs read, peak RSS)."""
    client, read, peak = aioredis.from_url(redis_url), [], rss_mb(pid)

    async def read_all() -> None:
        while len(read) < READER_EVENTS:
            read.append(json.loads(await asyncio.wait_for(reader.recv(), 30))["event_seq"])

    reading = asyncio.create_task(read_all())
    per_batch = STALLED_EVENTS // READER_EVENTS
    for n in range(READER_EVENTS):
        async with client.pipeline(transaction=False) as pipe:
            for k in range(per_batch):
                pipe.publish(user_channel(DEFAULT_TENANT, stalled), event(stalled, n * per_batch + k + 1))
            pipe.publish(user_channel(DEFAULT_TENANT, reader.user), event(reader.user, n + 1))
            await pipe.execute()
        if n % 20 == 19:
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.01)
    await reading
    await client.aclose()
    return read, max(peak, rss_mb(pid))


def test_a_device_that_stops_reading_is_cut_off_and_costs_bounded_memory(stack):
    port, stalled_user = free_port(), unique("stalled")
    base = f"http://127.0.0.1:{port}"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "notifyflow.cli", "gateway", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **stack.urls, "GATEWAY_JWT_SECRET": GATEWAY_SECRET}, start_new_session=True)
    try:
        wait_until(lambda: httpx.get(f"{base}/health").raise_for_status(), "gateway", gateway)

        async def scenario():
            stalled = stalled_client(port, stalled_user)
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={issue_token(unique('reader'), 'x')}"):
                pass  # warm the code paths the measurement crosses (a refused token, a close)
            reader_user = unique("reader")
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={issue_token(reader_user, GATEWAY_SECRET)}",
                                          max_size=2**20) as reader:
                reader.user = reader_user
                while websocket_connections(base) < 2:
                    await asyncio.sleep(0.05)
                baseline = rss_mb(gateway.pid)
                read, peak = await publish_and_watch(stack.urls["REDIS_URL"], gateway.pid, stalled_user, reader)
                deadline = time.monotonic() + 60  # the stall timer is the latest it can be cut
                while websocket_connections(base) > 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                left = websocket_connections(base)
            stalled.close()
            return read, baseline, peak, left

        read, baseline, peak, left = asyncio.run(scenario())
    finally:
        stop_process(gateway)
    assert read == list(range(1, READER_EVENTS + 1))  # the reader got everything, in order
    assert left == 1  # the stalled device was cut off
    # 20 MB went to the stalled device; the gateway held at most its inbox (1,000 events), 64 KiB of
    # transport buffer and a frame, not the stream.
    assert peak - baseline < 8, f"gateway memory grew {peak - baseline:.1f} MB"
