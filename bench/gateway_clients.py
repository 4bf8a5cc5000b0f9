"""One client process of bench.gateway: holds WebSockets of a range of users to the gateway from one
loopback source address, and times every notification frame from the request's created_at.

    python -m bench.gateway_clients --url ws://127.0.0.1:PORT --first 0 --count 10000 --source 127.0.0.2

A process holds at most what its descriptor limit allows (20,000 here), and a source address at most
what its ports give towards one server port, so bench.gateway starts several. Each socket binds a port
of its own below the ephemeral range (FIRST_PORT up): tens of thousands of ephemeral ports held on
127.0.0.x would leave others on the machine none that binds on every address (0.0.0.0).
It prints one JSON line once every socket is open (or failed), then one for each line on stdin: how many
notifications arrived for a line "count", and for any other line, the sockets still open and
{notification id: milliseconds from created_at to the frame}, and it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import sys
import time
from datetime import datetime

import websockets

from gateway.auth import issue_token

CONCURRENCY = 100  # handshakes in flight at once
FIRST_PORT = 10_000  # client ports FIRST_PORT.. on each source address, under the ephemeral range (32768..)
USER = "bench-user-{}"


class Client:
    def __init__(self, url: str, secret: str, source: str) -> None:
        self.url, self.secret, self.source = url, secret, source
        self.sockets: list = []
        self.failed = 0
        self.latencies: dict[str, float] = {}

    async def connect(self, users: range) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(n: int) -> None:
            async with gate:
                try:
                    socket = await websockets.connect(
                        f"{self.url}/ws?token={issue_token(USER.format(n), self.secret)}&device=bench",
                        sock=await self.bound_socket(FIRST_PORT + n - users.start), compression=None, max_size=2**16,
                        ping_interval=None, open_timeout=600)  # handshakes queue while thousands open at once
                except (OSError, TimeoutError, websockets.WebSocketException):
                    self.failed += 1
                    return
                self.sockets.append(socket)
                asyncio.create_task(self.listen(socket))

        await asyncio.gather(*(one(n) for n in users))

    async def bound_socket(self, port: int) -> socket.socket:
        """A TCP socket from (source, port) connected to the gateway; SO_REUSEADDR, so the port binds again
        while the last run's connection on it lingers in TIME_WAIT."""
        host, _, server_port = self.url.removeprefix("ws://").partition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.source, port))
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, int(server_port)))
        except BaseException:
            sock.close()
            raise
        return sock

    async def listen(self, socket) -> None:
        try:
            async for raw in socket:
                arrived = time.time()
                event = json.loads(raw)
                if event.get("event") == "notification.created":
                    notification = event["notification"]
                    created = datetime.fromisoformat(notification["created_at"]).timestamp()
                    self.latencies[notification["id"]] = (arrived - created) * 1000
        except websockets.ConnectionClosed:
            pass

    def held(self) -> int:
        return sum(1 for socket in self.sockets if socket.state.name == "OPEN")


def report(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def main_async(args: argparse.Namespace) -> None:
    client = Client(args.url, os.environ["GATEWAY_JWT_SECRET"], args.source)
    # Stopped early (bench.gateway went away): nothing to report to.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    await client.connect(range(args.first, args.first + args.count))
    report(connected=len(client.sockets), failed=client.failed)
    while (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip() == "count":
        report(received=len(client.latencies))
    report(held=client.held(), latencies=client.latencies)  # told to stop


def raise_file_limit() -> int:
    """As many descriptors as the hard limit allows: one per client socket (a process inherits it)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.1")
    args = parser.parse_args()
    raise_file_limit()
    asyncio.run(main_async(args))
    os._exit(0)  # thousands of sockets: the kernel closes them faster than a graceful close each


if __name__ == "__main__":
    main()
