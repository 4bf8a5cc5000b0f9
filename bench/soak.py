"""Crash soak: notifications through the notification flow and the in-app, push and webhook delivery
flows while flow processes are SIGKILLed at random points and restarted from their recovery stores.

    python -m bench.soak                                        # 5,000 notifications, 3 kills (~1 min)
    python -m bench.soak --notifications 100000 --kills 10     # the full soak (a few minutes)
    python -m bench.soak --faults [N]                           # and N restarts of PostgreSQL, Valkey, gateway

1% more records on notify.events are garbage and must land in notify.dlq with a reason; every
notification must reach the in-app center, each phone of its user (one user in ten has an Android
phone, one in twenty an iPhone too) and, when it asks for one, the tenant's webhook, once per
device and channel. Counted at the peers: in-app = notification-center rows in PostgreSQL plus the
live "created" events a connected device would show (Redis); push = the local FCM HTTP v1 and APNs
services; webhook = a receiver that verifies Standard Webhooks signatures. A send in flight at a
kill is sent again with the same idempotency key (webhook-id, FCM tag, apns-collapse-id), which the
receiver drops or the phone shows once: `redelivered` counts those; `duplicates` counts what a user
would see twice (a second "created" toast, a second webhook-id or collapse key for one notification).
With --faults (bench.faults), PostgreSQL, Valkey and the gateway are restarted too (3 restarts by
default, one of each), and one user in five keeps a device connected through the gateway over
WebSocket: each of its notifications must be shown on it once (live, replayed or reloaded).
Last line: accepted=<n> delivered=<n> lost=<n> duplicates=<n> dlq=<n> [faults=<n>]; the exit status
is 1 when something was lost or shown twice.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.faults import Devices, Faults, Gateway, Spread
from connectors import redis
from connectors.config_tables import add_grants
from connectors.outage import TRANSIENT
from connectors.kafka import TopicReader, produce_all, producer
from kernel.grants import AUDIENCE_KINDS, Grant
from kernel.requests import device_record, notification_request, routing_key
from kernel.settings import SERVICE_VARS
from kernel.topics import codec_for
from notifyflow.processes import FlowProcess, delivery_flow
from notifyflow.stack import LocalStack
from peers import push_settings
from peers.apns import ApnsService
from peers.fcm import FcmService
from peers.webhook import WebhookReceiver

console = Console(stderr=True)
LANES = ("normal", "high")
# No new delivery for this long while every flow's dataflow runs: whatever is missing is lost. A
# restarted flow is not counted until it runs: on a loaded machine its start alone can take longer.
STALL_S = 60.0


@dataclass
class Workload:
    records: list[tuple[bytes, bytes]]
    devices: list[dict]
    expected: set[tuple[str, str, str]]  # (notification id, channel, device id or user or "-")
    garbage: set[str]  # keys of the records that must be dead-lettered
    connected: list[str]  # users with a device connected through the gateway (--faults)


@dataclass
class Result:
    accepted: int
    expected: int
    delivered: int
    duplicates: int
    redelivered: int
    dlq: int
    garbage: int
    kills: int
    faults: int | None = None
    reconnects: int = 0  # of the devices connected through the gateway (--faults)
    resyncs: int = 0

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    def line(self) -> str:
        faults = "" if self.faults is None else f" faults={self.faults}"
        return (f"accepted={self.accepted} delivered={self.delivered} lost={self.lost} "
                f"duplicates={self.duplicates} dlq={self.dlq}{faults}")


def workload(run: str, notifications: int, seed: int, connected: bool = False) -> Workload:
    """Five notifications per user (under every frequency cap), one in 20 to the webhook instead of
    push, and 1% more records of garbage at random places. `connected`: one user in five (none with a
    phone: being online changes whether push is sent) has a device connected through the gateway."""
    rng, codec = random.Random(seed), codec_for("notify.events")
    users = max(1, notifications // 5)
    # The run is its own tenant: its users' devices are that tenant's users' too.
    phones = {u: [device_record(f"{run}-u{u}", "pixel", "android", token=f"{run}-fcm-{u}", tenant=run)]
              + ([device_record(f"{run}-u{u}", "iphone", "ios", token=f"{u:064x}", tenant=run)] if u % 20 == 5
                 else [])
              for u in range(5, users, 10)}
    online = {f"{run}-u{u}" for u in range(1, users, 5)} if connected else set()
    records, expected = [], set()
    for n in range(notifications):
        user, channels = f"{run}-u{n % users}", ["in_app", "webhook"] if n % 20 == 0 else []
        request = notification_request(user_id=user, title=f"Soak {n}", body=f"notification {n} of {run}",
                                       priority=rng.choice(LANES), tenant=run, channels=channels)
        request["id"] = f"{run}-n{n}"
        records.append((routing_key(request), codec.encode(request)))
        expected |= {(request["id"], channel, "-") for channel in channels or ["in_app"]}
        if user in online:  # every notification is in-app
            expected.add((request["id"], "websocket", user))
        if not channels:
            expected |= {(request["id"], "push", phone["device_id"]) for phone in phones.get(n % users, [])}
    garbage = {f"{run}-garbage-{n}" for n in range(notifications // 100)}
    for key in sorted(garbage):
        records.insert(rng.randrange(len(records) + 1), (key.encode(), rng.randbytes(rng.randrange(1, 200))))
    return Workload(records, [phone for user in phones.values() for phone in user], expected, garbage,
                    sorted(online))


class LiveEvents:
    """What a connected device of each soak user would be shown: "created" events per notification,
    each event_seq once (a publish retried after a lost reply arrives twice; the gateway forwards it once)."""

    def __init__(self, redis_url: str, run: str) -> None:
        self.created: dict[str, set[int]] = {}
        pubsub = redis.client(redis_url).pubsub(ignore_subscribe_messages=True)
        # Every channel of the run's tenant's users (connectors.redis.user_channel: user:<tenant>:<id>).
        pubsub.psubscribe(**{f"user:{run}:*": self.on_message})
        # Valkey restarting (--faults): the pubsub connects and subscribes again on the next read.
        self.thread = pubsub.run_in_thread(sleep_time=0.05, daemon=True, exception_handler=self.on_error)

    def on_message(self, message: dict) -> None:
        event = json.loads(message["data"])
        if event["event"] == "notification.created":
            self.created.setdefault(event["notification"]["id"], set()).add(event["event_seq"])

    @staticmethod
    def on_error(error: Exception, pubsub, thread) -> None:
        time.sleep(0.5)

    def close(self) -> None:
        self.thread.stop()
        self.thread.join(timeout=5)


class Peers:
    """The delivered side, counted where a user would see it."""

    def __init__(self, urls: dict[str, str], run: str, work: Workload, receiver: WebhookReceiver,
                 fcm: FcmService, apns: ApnsService, devices: Devices | None = None) -> None:
        self.database_url, self.run, self.devices = urls["DATABASE_URL"], run, devices
        self.database = psycopg.connect(self.database_url, autocommit=True)
        self.receiver, self.fcm, self.apns = receiver, fcm, apns
        self.device_of = {phone["token"]: phone["device_id"] for phone in work.devices}
        self.live = LiveEvents(urls["REDIS_URL"], run)
        self.dead_letters = TopicReader(urls["KAFKA_BOOTSTRAP_SERVERS"], ["notify.dlq"])
        self.dlq_keys: list[str] = []

    def shown(self) -> dict[tuple[str, str, str], list[str]]:
        """Per (notification, channel, device): the idempotency key of every copy that arrived."""
        shown: dict[tuple[str, str, str], list[str]] = {}
        if self.database.broken or self.database.closed:  # PostgreSQL restarted (--faults)
            self.database = psycopg.connect(self.database_url, autocommit=True)
        for (notification_id,) in self.database.execute("SELECT id FROM notifications WHERE tenant = %s",
                                                        [self.run]).fetchall():
            shown[(notification_id, "in_app", "-")] = [notification_id]
        for (notification_id, user), count in (self.devices.shown() if self.devices else {}).items():
            shown[(notification_id, "websocket", user)] = [f"shown {n}" for n in range(count)]  # each a showing
        for hook in self.receiver.received:  # the receiver keeps the first copy of each webhook-id
            shown.setdefault((hook["body"]["data"]["id"], "webhook", "-"), []).append(hook["id"])
        # On a shared stack the push flows also replay older runs' jobs to these peers: not ours, not counted.
        for sent in self.fcm.received:
            message = sent["message"]
            if device := self.device_of.get(message["token"]):
                key = (message["data"]["notification_id"], "push", device)
                shown.setdefault(key, []).append(message["android"]["notification"]["tag"])
        for sent in self.apns.received:
            if device := self.device_of.get(sent["token"]):
                key = (sent["payload"]["notification_id"], "push", device)
                shown.setdefault(key, []).append(sent["headers"]["apns-collapse-id"])
        return shown

    def delivered(self) -> set[tuple[str, str, str]]:
        return set(self.shown())

    def duplicates(self, shown: dict) -> int:
        """What a user would see twice: a second "created" toast, or a second idempotency key."""
        toasts = sum(len(seqs) - 1 for seqs in self.live.created.values())
        return toasts + sum(len(set(keys)) - 1 for keys in shown.values())

    def redelivered(self, shown: dict) -> int:
        """Copies with a key already delivered: the receiver drops them, the phone shows one."""
        return self.receiver.duplicates + sum(len(keys) - len(set(keys)) for keys in shown.values())

    def dead_lettered(self, codec=codec_for("notify.dlq")) -> list[str]:
        for message in self.dead_letters.poll(0.2):
            letter = codec.decode(message.value())
            key = (letter["original_key"] or b"").decode(errors="replace")
            if key.startswith(self.run) and letter["reason"]:
                self.dlq_keys.append(key)
        return self.dlq_keys

    def close(self) -> None:
        self.live.close()
        self.dead_letters.close()
        self.database.close()


def start_flows(workdir: Path, env: dict[str, str]) -> list[FlowProcess]:
    targets = ["notifications"] + [delivery_flow(channel, lane) for channel in ("in_app", "push", "webhook")
                                   for lane in LANES]
    return [FlowProcess(target, workdir / f"recovery-{n}", workdir / f"flow-{n}.log", env=env).start()
            for n, target in enumerate(targets)]


def run(urls: dict[str, str], workdir: Path, notifications: int, kills: int, seed: int = 7, faults: int = 0,
        stack: LocalStack | None = None) -> Result:
    """`faults`: restarts of PostgreSQL, Valkey and the gateway, which `stack` (the one of `urls`) started."""
    rng, run_id = random.Random(seed), f"soak{uuid.uuid4().hex[:6]}"
    work = workload(run_id, notifications, seed, connected=bool(faults))
    # Kill points by progress, so every kill lands while there is work in flight, however fast it goes.
    kill_at = sorted(rng.uniform(0.05, 0.9) * len(work.expected) for _ in range(kills))
    gateway = Gateway(urls, workdir / "gateway.log") if faults else None
    with WebhookReceiver() as receiver, FcmService() as fcm, ApnsService() as apns, \
            psycopg.connect(urls["DATABASE_URL"], autocommit=True) as db:
        db.execute("INSERT INTO webhook_endpoints (tenant, url, secret) VALUES (%s, %s, %s)",
                   (run_id, receiver.url, receiver.secret))
        add_grants(db, [Grant(run_id, "*", None, "critical", AUDIENCE_KINDS)])  # the run is its own tenant
        client = producer(urls["KAFKA_BOOTSTRAP_SERVERS"])
        devices = codec_for("notify.devices")
        # Before the flows start, so they know every phone before the first notification.
        produce_all(client, "notify.devices", [(routing_key(d), devices.encode(d)) for d in work.devices])
        # One tenant and sender sending everything within seconds: above its ingestion limits otherwise.
        limits = {"NOTIFYFLOW_TENANT_PER_MINUTE": str(2 * notifications),
                  "NOTIFYFLOW_SENDER_PER_MINUTE": str(2 * notifications)}
        flows = start_flows(workdir, {**urls, **limits, **push_settings(workdir, fcm, apns)})
        connected = Devices(gateway.start().url, work.connected, seed, tenant=run_id).start() if gateway else None
        peers = Peers(urls, run_id, work, receiver, fcm, apns, connected)
        try:
            if faults:
                restarts = Faults(stack, gateway, faults, len(work.expected), rng, Spread(client, "notify.events",
                                                                                         work.records))
            else:
                produce_all(client, "notify.events", work.records, timeout_s=120)
                restarts = None
            killed = watch(flows, peers, work, kill_at, rng, restarts)
            time.sleep(3)  # a replay after the last kill may still be sending: let it show
            shown, dlq = peers.shown(), set(peers.dead_lettered())
            return Result(accepted=len(work.records) - len(work.garbage), expected=len(work.expected),
                          delivered=len(set(shown) & work.expected), duplicates=peers.duplicates(shown),
                          redelivered=peers.redelivered(shown), dlq=len(dlq & work.garbage),
                          garbage=len(work.garbage), kills=killed, faults=len(restarts.made) if restarts else None,
                          **(connected.reconnects() if connected else {}))
        finally:
            if connected:
                connected.close()
            peers.close()
            for flow in flows:
                flow.stop()
            if gateway:
                gateway.stop()


def watch(flows: list[FlowProcess], peers: Peers, work: Workload, kill_at: list[float], rng: random.Random,
          faults: Faults | None = None) -> int:
    """Until everything arrived (or nothing more has for STALL_S since the last kill or restart and
    since every flow got going), killing and restarting a random flow at each kill point, and
    restarting a dependency at each fault point (nothing restarts the flows then: they must wait it
    out); returns how many kills were made."""
    killed, progress_at, last = 0, time.monotonic(), -1
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("delivered", total=len(work.expected))
        while True:
            try:
                done = len(peers.delivered() & work.expected)
            except TRANSIENT:  # PostgreSQL is restarting: look again in a moment
                time.sleep(0.5)
                continue
            dlq = len(set(peers.dead_lettered()) & work.garbage)
            made = len(faults.made) if faults else 0
            bar.update(task, completed=done,
                       description=f"delivered ({killed} kills, {made} restarts, {dlq} dead letters)")
            if done != last or not all(flow.executing() for flow in flows):
                progress_at, last = time.monotonic(), done
            if killed < len(kill_at) and done >= kill_at[killed]:
                victim = rng.choice(flows)
                victim.kill()
                console.print(f"[dim]SIGKILL {victim.target} at {done:,} delivered; restarting it[/]")
                victim.start()
                killed += 1
                progress_at = time.monotonic()
            if faults and (kind := faults.due(done)):
                console.print(f"[dim]restarting {kind} at {done:,} delivered[/]")
            if faults and not faults.idle():
                progress_at = time.monotonic()
            finished = done == len(work.expected) and dlq == len(work.garbage)
            if faults:
                faults.check()
                finished = finished and faults.finished()
            if (finished and killed == len(kill_at)) or time.monotonic() - progress_at > STALL_S:
                return killed
            for flow in flows:
                flow.check()
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notifications", type=int, default=5_000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--faults", type=int, nargs="?", const=3, default=0,
                        help="restarts of PostgreSQL, Valkey and the gateway (3 when given without a number)")
    args = parser.parse_args()
    # Restarts need servers this process started: the environment's URLs are not used with --faults.
    environ = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS} if args.faults else None
    with LocalStack(environ, on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack, \
            tempfile.TemporaryDirectory(prefix="bench-soak-") as scratch:
        started = time.monotonic()
        result = run(stack.urls, Path(scratch), args.notifications, args.kills, args.seed, args.faults, stack)
        console.print(f"{result.kills} kills and {result.faults or 0} restarts in {time.monotonic() - started:.0f} s; "
                      f"{result.expected:,} deliveries expected; redelivered={result.redelivered} (in flight at a "
                      f"kill, same idempotency key); {result.dlq} of {result.garbage} garbage records dead-lettered")
        if result.faults is not None:
            console.print(f"devices through the gateway: {result.reconnects} reconnects, {result.resyncs} resyncs")
    print(result.line())
    if result.lost or result.duplicates:
        sys.exit(1)


if __name__ == "__main__":
    main()
