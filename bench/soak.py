"""Crash soak: notifications through the notification flow and the in-app and webhook delivery
flows while flow processes are SIGKILLed at random points and restarted from their recovery stores.

    python -m bench.soak                                        # 5,000 notifications, 3 kills (~1 min)
    python -m bench.soak --notifications 100000 --kills 10     # the full soak (a few minutes)

1% more records on notify.events are garbage and must land in notify.dlq with a reason; every
notification must reach the in-app center and, when it asks for one, the tenant's webhook,
once. Counted at the peers: in-app = notification-center rows in PostgreSQL plus the live
"created" events a connected device would show (Redis); webhook = a receiver that verifies
Standard Webhooks signatures and drops a webhook-id it has already processed (a send that was in
flight at a kill is sent again with the same id: `redelivered` counts those drops).
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
from connectors.kafka import TopicReader, produce_all, producer
from infra.flows import FlowProcess, delivery_flow
from infra.peers.webhook import WebhookReceiver
from infra.stack import LocalStack
from infra.topics import codec_for
from notifyflow.requests import notification_request

console = Console(stderr=True)
LANES = ("normal", "high")
STALL_S = 60.0  # no new delivery for this long after the last kill: whatever is missing is lost


@dataclass
class Workload:
    records: list[tuple[bytes, bytes]]
    expected: set[tuple[str, str]]  # (notification id, channel)
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
    """Five notifications per user (under every frequency cap), one in 20 also to the webhook, and
    1% more records of garbage at random places."""
    rng, codec = random.Random(seed), codec_for("notify.events")
    users = max(1, notifications // 5)
    records, expected = [], set()
    for n in range(notifications):
        user, channels = f"{run}-u{n % users}", ["in_app", "webhook"] if n % 20 == 0 else []
        request = notification_request(user_id=user, title=f"Soak {n}", body=f"notification {n} of {run}",
                                       priority=rng.choice(LANES), tenant=run, channels=channels)
        request["id"] = f"{run}-n{n}"
        records.append((user.encode(), codec.encode(request)))
        expected |= {(request["id"], channel) for channel in channels or ["in_app"]}
    garbage = {f"{run}-garbage-{n}" for n in range(notifications // 100)}
    for key in sorted(garbage):
        records.insert(rng.randrange(len(records) + 1), (key.encode(), rng.randbytes(rng.randrange(1, 200))))
    return Workload(records, expected, garbage)


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

    def __init__(self, urls: dict[str, str], run: str, receiver: WebhookReceiver) -> None:
        self.database, self.run, self.receiver = psycopg.connect(urls["DATABASE_URL"], autocommit=True), run, receiver
        self.live = LiveEvents(urls["REDIS_URL"], run)
        self.dead_letters = TopicReader(urls["KAFKA_BOOTSTRAP_SERVERS"], ["notify.dlq"])
        self.dlq_keys: list[str] = []

    def delivered(self) -> set[tuple[str, str]]:
        rows = self.database.execute("SELECT id FROM notifications WHERE tenant = %s", [self.run]).fetchall()
        hooks = {(hook["body"]["data"]["id"], "webhook") for hook in self.receiver.received}
        return {(row[0], "in_app") for row in rows} | hooks

    def duplicates(self) -> int:
        """Shown twice: a live "created" event more than once, or one notification under two webhook-ids."""
        toasts = sum(count - 1 for count in self.live.created.values() if count > 1)
        hooks = Counter(hook["body"]["data"]["id"] for hook in self.receiver.received)
        return toasts + sum(count - 1 for count in hooks.values() if count > 1)

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


def start_flows(workdir: Path, urls: dict[str, str]) -> list[FlowProcess]:
    targets = ["notifications"] + [delivery_flow(channel, lane) for channel in ("in_app", "webhook") for lane in LANES]
    return [FlowProcess(target, workdir / f"recovery-{n}", workdir / f"flow-{n}.log", env=urls).start()
            for n, target in enumerate(targets)]


def run(urls: dict[str, str], workdir: Path, notifications: int, kills: int, seed: int = 7) -> Result:
    rng, run_id = random.Random(seed), f"soak{uuid.uuid4().hex[:6]}"
    work = workload(run_id, notifications, seed)
    # Kill points by progress, so every kill lands while there is work in flight, however fast it goes.
    kill_at = sorted(rng.uniform(0.05, 0.9) * len(work.expected) for _ in range(kills))
    with WebhookReceiver() as receiver, psycopg.connect(urls["DATABASE_URL"], autocommit=True) as db:
        db.execute("INSERT INTO webhook_endpoints (tenant, url, secret) VALUES (%s, %s, %s)",
                   (run_id, receiver.url, receiver.secret))
        flows, peers = start_flows(workdir, urls), Peers(urls, run_id, receiver)
        try:
            produce_all(producer(urls["KAFKA_BOOTSTRAP_SERVERS"]), "notify.events", work.records, timeout_s=120)
            killed = watch(flows, peers, work, kill_at, rng)
            time.sleep(3)  # a replay after the last kill may still be sending: let it show
            delivered, dlq = peers.delivered(), set(peers.dead_lettered())
            return Result(accepted=len(work.records) - len(work.garbage), expected=len(work.expected),
                          delivered=len(delivered & work.expected), duplicates=peers.duplicates(),
                          redelivered=receiver.duplicates, dlq=len(dlq & work.garbage), garbage=len(work.garbage),
                          kills=killed)
        finally:
            peers.close()
            for flow in flows:
                flow.stop()


def watch(flows: list[FlowProcess], peers: Peers, work: Workload, kill_at: list[float], rng: random.Random) -> int:
    """Until everything arrived (or nothing more has for STALL_S after the last kill), killing and
    restarting a random flow at each kill point; returns how many kills were made."""
    killed, progress_at, last = 0, time.monotonic(), -1
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("delivered", total=len(work.expected))
        while True:
            done = len(peers.delivered() & work.expected)
            dlq = len(set(peers.dead_lettered()) & work.garbage)
            bar.update(task, completed=done, description=f"delivered ({killed} kills, {dlq} dead letters)")
            if done != last:
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
                      f"expected; {result.redelivered} in-flight resends dropped by the webhook receiver by id; "
                      f"{result.dlq} of {result.garbage} garbage records dead-lettered")
    print(result.line())


if __name__ == "__main__":
    main()
