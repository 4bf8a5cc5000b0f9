"""Crash soak: notifications through the notification flow and the in-app, push and webhook delivery
flows while flow processes are SIGKILLed at random points and restarted from their recovery stores.

    python -m bench.soak                                        # 5,000 notifications, 3 kills (~1 min)
    python -m bench.soak --notifications 100000 --kills 10     # the full soak (a few minutes)

1% more records on notify.events are garbage and must land in notify.dlq with a reason; every
notification must reach the in-app center, each phone of its user (one user in ten has an Android
phone, one in twenty an iPhone too) and, when it asks for one, the tenant's webhook, once per
device and channel. Counted at the peers: in-app = notification-center rows in PostgreSQL plus the
live "created" events a connected device would show (Redis); push = the local FCM HTTP v1 and APNs
services; webhook = a receiver that verifies Standard Webhooks signatures. A send in flight at a
kill is sent again with the same idempotency key (webhook-id, FCM tag, apns-collapse-id), which the
receiver drops or the phone shows once: `redelivered` counts those; `duplicates` counts what a user
would see twice (a second "created" toast, a second webhook-id or collapse key for one notification).
Last line: accepted=<n> delivered=<n> lost=<n> duplicates=<n> dlq=<n>
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from connectors import redis
from connectors.config_tables import add_grants
from connectors.kafka import TopicReader, produce_all, producer
from kernel.grants import AUDIENCE_KINDS, Grant
from kernel.requests import device_record, notification_request
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
    expected: set[tuple[str, str, str]]  # (notification id, channel, device id or "-")
    garbage: set[str]  # keys of the records that must be dead-lettered


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

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    def line(self) -> str:
        return (f"accepted={self.accepted} delivered={self.delivered} lost={self.lost} "
                f"duplicates={self.duplicates} dlq={self.dlq}")


def workload(run: str, notifications: int, seed: int) -> Workload:
    """Five notifications per user (under every frequency cap), one in 20 to the webhook instead of
    push, and 1% more records of garbage at random places."""
    rng, codec = random.Random(seed), codec_for("notify.events")
    users = max(1, notifications // 5)
    phones = {u: [device_record(f"{run}-u{u}", "pixel", "android", token=f"{run}-fcm-{u}")]
              + ([device_record(f"{run}-u{u}", "iphone", "ios", token=f"{u:064x}")] if u % 20 == 5 else [])
              for u in range(5, users, 10)}
    records, expected = [], set()
    for n in range(notifications):
        user, channels = f"{run}-u{n % users}", ["in_app", "webhook"] if n % 20 == 0 else []
        request = notification_request(user_id=user, title=f"Soak {n}", body=f"notification {n} of {run}",
                                       priority=rng.choice(LANES), tenant=run, channels=channels)
        request["id"] = f"{run}-n{n}"
        records.append((user.encode(), codec.encode(request)))
        expected |= {(request["id"], channel, "-") for channel in channels or ["in_app"]}
        if not channels:
            expected |= {(request["id"], "push", phone["device_id"]) for phone in phones.get(n % users, [])}
    garbage = {f"{run}-garbage-{n}" for n in range(notifications // 100)}
    for key in sorted(garbage):
        records.insert(rng.randrange(len(records) + 1), (key.encode(), rng.randbytes(rng.randrange(1, 200))))
    return Workload(records, [phone for user in phones.values() for phone in user], expected, garbage)


class LiveEvents:
    """What a connected device of each soak user would be shown: "created" events per notification."""

    def __init__(self, redis_url: str, run: str) -> None:
        self.created: Counter[str] = Counter()
        pubsub = redis.client(redis_url).pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(**{f"user:{run}-*": self.on_message})
        self.thread = pubsub.run_in_thread(sleep_time=0.05, daemon=True)

    def on_message(self, message: dict) -> None:
        event = json.loads(message["data"])
        if event["event"] == "notification.created":
            self.created[event["notification"]["id"]] += 1

    def close(self) -> None:
        self.thread.stop()
        self.thread.join(timeout=5)


class Peers:
    """The delivered side, counted where a user would see it."""

    def __init__(self, urls: dict[str, str], run: str, work: Workload, receiver: WebhookReceiver,
                 fcm: FcmService, apns: ApnsService) -> None:
        self.database, self.run = psycopg.connect(urls["DATABASE_URL"], autocommit=True), run
        self.receiver, self.fcm, self.apns = receiver, fcm, apns
        self.device_of = {phone["token"]: phone["device_id"] for phone in work.devices}
        self.live = LiveEvents(urls["REDIS_URL"], run)
        self.dead_letters = TopicReader(urls["KAFKA_BOOTSTRAP_SERVERS"], ["notify.dlq"])
        self.dlq_keys: list[str] = []

    def shown(self) -> dict[tuple[str, str, str], list[str]]:
        """Per (notification, channel, device): the idempotency key of every copy that arrived."""
        shown: dict[tuple[str, str, str], list[str]] = {}
        for (notification_id,) in self.database.execute("SELECT id FROM notifications WHERE tenant = %s",
                                                        [self.run]).fetchall():
            shown[(notification_id, "in_app", "-")] = [notification_id]
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
        toasts = sum(count - 1 for count in self.live.created.values() if count > 1)
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


def run(urls: dict[str, str], workdir: Path, notifications: int, kills: int, seed: int = 7) -> Result:
    rng, run_id = random.Random(seed), f"soak{uuid.uuid4().hex[:6]}"
    work = workload(run_id, notifications, seed)
    # Kill points by progress, so every kill lands while there is work in flight, however fast it goes.
    kill_at = sorted(rng.uniform(0.05, 0.9) * len(work.expected) for _ in range(kills))
    with WebhookReceiver() as receiver, FcmService() as fcm, ApnsService() as apns, \
            psycopg.connect(urls["DATABASE_URL"], autocommit=True) as db:
        db.execute("INSERT INTO webhook_endpoints (tenant, url, secret) VALUES (%s, %s, %s)",
                   (run_id, receiver.url, receiver.secret))
        add_grants(db, [Grant(run_id, "*", None, "critical", AUDIENCE_KINDS)])  # the run is its own tenant
        client = producer(urls["KAFKA_BOOTSTRAP_SERVERS"])
        devices = codec_for("notify.devices")
        # Before the flows start, so they know every phone before the first notification.
        produce_all(client, "notify.devices", [(d["user_id"].encode(), devices.encode(d)) for d in work.devices])
        # One tenant and sender sending everything within seconds: above its ingestion limits otherwise.
        limits = {"NOTIFYFLOW_TENANT_PER_MINUTE": str(2 * notifications),
                  "NOTIFYFLOW_SENDER_PER_MINUTE": str(2 * notifications)}
        flows = start_flows(workdir, {**urls, **limits, **push_settings(workdir, fcm, apns)})
        peers = Peers(urls, run_id, work, receiver, fcm, apns)
        try:
            produce_all(client, "notify.events", work.records, timeout_s=120)
            killed = watch(flows, peers, work, kill_at, rng)
            time.sleep(3)  # a replay after the last kill may still be sending: let it show
            shown, dlq = peers.shown(), set(peers.dead_lettered())
            return Result(accepted=len(work.records) - len(work.garbage), expected=len(work.expected),
                          delivered=len(set(shown) & work.expected), duplicates=peers.duplicates(shown),
                          redelivered=peers.redelivered(shown), dlq=len(dlq & work.garbage),
                          garbage=len(work.garbage), kills=killed)
        finally:
            peers.close()
            for flow in flows:
                flow.stop()


def watch(flows: list[FlowProcess], peers: Peers, work: Workload, kill_at: list[float], rng: random.Random) -> int:
    """Until everything arrived (or nothing more has for STALL_S since the last kill and since
    every flow got going), killing and restarting a random flow at each kill point; returns how
    many kills were made."""
    killed, progress_at, last = 0, time.monotonic(), -1
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("delivered", total=len(work.expected))
        while True:
            done = len(peers.delivered() & work.expected)
            dlq = len(set(peers.dead_lettered()) & work.garbage)
            bar.update(task, completed=done, description=f"delivered ({killed} kills, {dlq} dead letters)")
            if done != last or not all(flow.executing() for flow in flows):
                progress_at, last = time.monotonic(), done
            if killed < len(kill_at) and done >= kill_at[killed]:
                victim = rng.choice(flows)
                victim.kill()
                console.print(f"[dim]SIGKILL {victim.target} at {done:,} delivered; restarting it[/]")
                victim.start()
                killed += 1
                progress_at = time.monotonic()
            finished = done == len(work.expected) and dlq == len(work.garbage)
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
    args = parser.parse_args()
    with LocalStack(on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack, \
            tempfile.TemporaryDirectory(prefix="bench-soak-") as scratch:
        started = time.monotonic()
        result = run(stack.urls, Path(scratch), args.notifications, args.kills, args.seed)
        console.print(f"{result.kills} kills in {time.monotonic() - started:.0f} s; {result.expected:,} deliveries "
                      f"expected; redelivered={result.redelivered} (in flight at a kill, same idempotency key); "
                      f"{result.dlq} of {result.garbage} garbage records dead-lettered")
    print(result.line())


if __name__ == "__main__":
    main()
