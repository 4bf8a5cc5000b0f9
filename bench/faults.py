"""Dependency faults for the soak (`python -m bench.soak --faults`): PostgreSQL and Valkey restarted on
their own data directory and port, the gateway SIGKILLed and started again, at random points while
work is in flight; meanwhile a share of the soak's users stay connected through the gateway over
WebSocket, as the web client (web/connection.js) is: each reconnects with the highest event_seq it has
seen, backing off while the gateway or PostgreSQL is away, and reloads the center from the API when
told to resync. What each device is shown (a "created" event live, a "sync" replayed, or a row of a
reload) is counted per notification: each must be shown exactly once.

Nothing here restarts a flow: the flows must wait out PostgreSQL and Redis by themselves.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import websockets

from gateway.auth import issue_token
from connectors.kafka import produce_all
from notifyflow.stack import LocalStack, free_port, stop_process, wait_until

SECRET = "bench-soak-gateway-secret-32-byte"
KINDS = ("postgres", "valkey", "gateway")
ENV_VAR = {"postgres": "DATABASE_URL", "valkey": "REDIS_URL"}
DOWN_S = 2.0  # how long a restarted dependency stays away
SHOWN_EVENTS = ("notification.created", "notification.sync")
BACKOFF_S = (0.5, 2.0, 5.0)  # web/connection.js's backoff (0.5 s doubling, jittered), capped at 5 s for the soak
CONNECT_TIMEOUT_S = 120.0
SPREAD_S = 30.0  # the requests are produced over this long, so every flow has work in flight at each fault


class Spread:
    """Produces records over SPREAD_S in a thread: a steady stream rather than one burst, which the
    fast flows (the notification flow, in-app) would be done with before the first fault."""

    def __init__(self, client, topic: str, records: list, chunks: int = 100) -> None:
        self.error: BaseException | None = None
        size = max(1, len(records) // chunks)
        batches = [records[start:start + size] for start in range(0, len(records), size)]

        def produce() -> None:
            started = time.monotonic()
            try:
                for n, batch in enumerate(batches):
                    time.sleep(max(0.0, started + n * SPREAD_S / len(batches) - time.monotonic()))
                    produce_all(client, topic, batch, timeout_s=120)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=produce, daemon=True)
        self.thread.start()

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError("producing the requests failed") from self.error


class Gateway:
    """`notifyflow gateway` on a fixed loopback port, killed and started again on the same port."""

    def __init__(self, urls: dict[str, str], log: Path) -> None:
        self.port, self.log = free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **urls, "GATEWAY_JWT_SECRET": SECRET}
        self.process: subprocess.Popen | None = None

    def start(self) -> Gateway:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "notifyflow.cli", "gateway", "--host", "127.0.0.1", "--port", str(self.port),
                 "--log-level", "warning"], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: httpx.get(f"{self.url}/health", timeout=2).raise_for_status(), "the gateway",
                   self.process, self.log)
        return self

    def kill(self) -> None:
        """A crash: every connection is cut at once."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGINT)


class Device:
    """One open device of a user: what it was shown, per notification id."""

    def __init__(self, user: str) -> None:
        self.user, self.last, self.shown = user, 0, Counter()
        self.opened = self.resyncs = 0

    def on_event(self, event: dict) -> None:
        if event["event"] in SHOWN_EVENTS:
            self.shown[event["notification"]["id"]] += 1
        if isinstance(event.get("event_seq"), int):
            self.last = max(self.last, event["event_seq"])


class Devices:
    """The devices, on an event loop in a thread of their own."""

    def __init__(self, gateway: str, users: list[str], seed: int, tenant: str) -> None:
        self.gateway, self.devices, self.tenant = gateway, [Device(user) for user in users], tenant
        self.rng, self.stopping = random.Random(seed), False
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.tasks: list[asyncio.Task] = []

    def start(self) -> Devices:
        """Returns once every device is connected."""
        self.thread.start()

        async def launch() -> None:
            self.tasks = [asyncio.create_task(self.keep_open(device)) for device in self.devices]

        asyncio.run_coroutine_threadsafe(launch(), self.loop).result()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while any(not device.opened for device in self.devices):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{sum(not d.opened for d in self.devices)} devices could not connect")
            time.sleep(0.1)
        return self

    def url(self, device: Device) -> str:
        token = issue_token(device.user, SECRET, tenant=self.tenant)
        return f"ws{self.gateway.removeprefix('http')}/ws?token={token}&last_event_id={device.last}&device=soak-web"

    async def keep_open(self, device: Device) -> None:
        attempt = 0
        while not self.stopping:
            resync = None
            try:
                async with websockets.connect(self.url(device), open_timeout=10, ping_interval=5, ping_timeout=10,
                                              close_timeout=2) as socket:
                    device.opened += 1
                    attempt = 0
                    async for raw in socket:
                        event = json.loads(raw)
                        if event["event"] == "resync":
                            resync = event
                            break
                        device.on_event(event)
                    if socket.close_code == 4409:  # fell behind: reconnect at once and replay
                        resync = resync or {}
            except (OSError, TimeoutError, websockets.WebSocketException):
                pass
            if resync is not None:
                await self.reload(device, resync)
                continue
            delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            attempt += 1
            await asyncio.sleep(delay * self.rng.uniform(0.8, 1.2))

    async def reload(self, device: Device, resync: dict) -> None:
        """A resync with an event_seq: the page reloads the center from the API and goes on from it;
        without one, the replay from the last event id fills the gap."""
        device.resyncs += 1
        if not isinstance(resync.get("event_seq"), int):
            return
        headers = {"authorization": f"Bearer {issue_token(device.user, SECRET, tenant=self.tenant)}"}
        while not self.stopping:
            try:
                async with httpx.AsyncClient(base_url=self.gateway, headers=headers, timeout=10) as client:
                    response = await client.get("/api/notifications", params={"limit": 100})
                if response.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(1.0)
        else:
            return
        for item in response.json()["items"]:
            device.shown[item["id"]] = max(device.shown[item["id"]], 1)  # already there is not shown again
        device.last = max(device.last, resync["event_seq"])

    def shown(self) -> dict[tuple[str, str], int]:
        """(notification id, user) -> how many times that user's device was shown it."""
        return {(notification_id, device.user): count for device in self.devices
                for notification_id, count in list(device.shown.items())}

    def reconnects(self) -> dict[str, int]:
        return {"reconnects": sum(device.opened - 1 for device in self.devices),
                "resyncs": sum(device.resyncs for device in self.devices)}

    def close(self) -> None:
        self.stopping = True

        async def cancel() -> None:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class Faults:
    """Restarts at points of the soak's progress, one kind after another in a shuffled order, each in a
    thread of its own (the soak keeps watching meanwhile)."""

    def __init__(self, stack: LocalStack, gateway: Gateway, count: int, total: int, rng: random.Random,
                 spread: Spread | None = None) -> None:
        self.stack, self.gateway, self.spread = stack, gateway, spread
        kinds = [KINDS[n % len(KINDS)] for n in range(count)]
        rng.shuffle(kinds)
        self.plan = sorted(zip(sorted(rng.uniform(0.05, 0.85) * total for _ in range(count)), kinds))
        self.made: list[str] = []
        self.running: threading.Thread | None = None
        self.error: BaseException | None = None

    def due(self, done: int) -> str | None:
        """Starts the next restart when progress reached its point and the last one is over."""
        if len(self.made) == len(self.plan) or done < self.plan[len(self.made)][0] or not self.idle():
            return None
        kind = self.plan[len(self.made)][1]
        self.made.append(kind)
        self.running = threading.Thread(target=self.restart, args=(kind,), daemon=True)
        self.running.start()
        return kind

    def restart(self, kind: str) -> None:
        try:
            if kind == "gateway":
                self.gateway.kill()
                time.sleep(DOWN_S / 4)  # devices see it gone and back off
                self.gateway.start()
            else:
                self.stack.restart(ENV_VAR[kind], DOWN_S)
        except BaseException as exc:
            self.error = exc

    def check(self) -> None:
        """Raise what stopped a restart (a server that would not come back) or the requests' producer."""
        if self.spread is not None:
            self.spread.check()
        if self.error is not None:
            raise RuntimeError(f"restarting {self.made[-1]} failed") from self.error

    def idle(self) -> bool:
        return self.running is None or not self.running.is_alive()

    def finished(self) -> bool:
        return len(self.made) == len(self.plan) and self.idle()
