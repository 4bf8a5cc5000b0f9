"""Throughput of the notification flow against a bare Kafka loop over the same events.

    python -m bench.flow [--events N] [--users N] [--processes P]

Both read the same mixed workload from notify.events on the local stack. The ceiling is
consume -> decode -> encode -> produce in one loop; the flow is `bytewax.run` of the notification
flow with recovery on (bench/probe.py: the same flow, its Kafka edges timed), on fresh topics,
having read the users' preferences and devices before the requests are published. Both are timed
the same way, on the wall clock: from the first notify.events record consumed to the broker's
acknowledgement of the last record written.

Every input is accounted for, or the benchmark fails instead of printing a figure: the ceiling's by
an acknowledged output each; the flow's by a status for each user the request addresses, or by a
dead letter carrying its bytes.

state_bytes_per_user is what the recovery store holds for the per-user step (its snapshots, as
bytewax stores them) per user who was sent something, once the flow's last snapshot covers every
input; `--users 100000` populates 100,000 users. With `--processes P` (P > 1) the flow runs again
as a cluster of P processes, and speedup is its rate over the one-process rate. Each flow run also
prints the CPU each process used while it ran (bench/cpu.py).

Last line: flow_eps=<events/s> ceiling_eps=<events/s> ratio=<flow/ceiling>
           [flow_eps_p<P>=<events/s> speedup=<ratio>] state_bytes_per_user=<bytes>
"""

from __future__ import annotations

import argparse
import pickle
import random
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka.admin import AdminClient
from rich.console import Console

from bench.cpu import ProcessTreeCpu, cpu_table
from connectors.kafka import TopicReader, ensure_topics, produce_all, producer
from kernel.requests import notification_request, routing_key
from kernel.topics import DEVICES, DLQ, EVENTS, PREFERENCES, STATUS, TOPICS, TopicSpec, codec_for
from notifyflow.processes import FlowProcess
from notifyflow.stack import LocalStack

console = Console(stderr=True)
CATEGORIES = ("messages", "messages", "social", "ci", "security", "marketing", "general")
PRIORITIES = ("normal", "normal", "normal", "high", "low", "critical")
PROBED_FLOW = "bench.probe:flow"
PER_USER_STEP, INPUT_STEP = "notifications.per_user_steps", "notifications.read_topics"
SNAPSHOT_S = 5
QUIET_S = 2.0  # no acknowledgement for this long: the flow has written what it had


@dataclass
class Input:
    key: bytes
    value: bytes
    created_at: datetime  # to the millisecond, as the statuses carry it back
    users: tuple[str, ...]  # whom the request addresses; empty when its bytes are broken


def workload(events: int, users: int, seed: int = 7) -> tuple[list[Input], list, list]:
    """Mixed requests: duplicates that merge, consent and preference drops, fan-out, invalid input."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    codec = codec_for(EVENTS)
    user_ids = [f"user-{n}" for n in range(users)]
    prefs = [{"user_id": u, "updated_at": now, "deleted": False, "enabled": rng.random() > 0.05,
              "quiet_hours": None, "digest": None, "channels": {}, "categories": {},
              "marketing_consent": rng.random() > 0.5, "email": f"{u}@example.com", "phone": None,
              "locale": rng.choice([None, "en", "fr"]), "timezone": "Europe/Paris"} for u in user_ids]
    devices = [{"user_id": u, "device_id": f"{u}-phone", "platform": "android", "token": f"token-{u}",
                "web_push": None, "app_version": "5.1", "registered_at": now, "active": True}
               for u in user_ids if rng.random() > 0.3]
    inputs = []
    for n in range(events):
        user = rng.choice(user_ids)
        category = rng.choice(CATEGORIES)
        title = f"Update {rng.randrange(events // 4)}" if rng.random() > 0.2 else "You have a new message"
        created_at = now - timedelta(seconds=events - n)
        request = notification_request(
            user_id=user, title=title, body="Something happened", category=category,
            priority=rng.choice(PRIORITIES), type="marketing" if category == "marketing" else "info",
            content={"title": title, "body": "Something happened", "image_url": None, "icon": None, "badge": None,
                     "actions": []},
            metadata={"created_at": created_at, "expires_at": None, "deep_link": None,
                      "payload": {}, "source_app": "bench", "campaign_id": None},
            audience=None, channels=[], scheduled_at=None, idempotency_key=None, locale=None, template_id=None,
            template_vars={})
        addressed = (user,)
        if n % 100 == 0:  # fan-out to a handful of users
            addressed = tuple(rng.sample(user_ids, 5))
            request.update(user_id=None, audience={"user_ids": list(addressed), "segment": None, "topic": None})
        value = codec.encode(request)
        if n % 97 == 0:  # truncated: must land in the dead-letter topic
            value, addressed = value[: len(value) // 2], ()
        inputs.append(Input(routing_key(request), value,
                            created_at.replace(microsecond=created_at.microsecond // 1000 * 1000), addressed))
    return inputs, prefs, devices


def fresh_topics(bootstrap: str) -> None:
    """Every notify topic deleted and created again, empty: each run starts from the same broker."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [spec.name for spec in TOPICS]
    for future in admin.delete_topics(names, operation_timeout=10).values():
        future.result()
    deadline = time.monotonic() + 10
    while set(names) & set(admin.list_topics(timeout=10).topics):
        if time.monotonic() > deadline:
            raise SystemExit("the broker did not delete the topics")
        time.sleep(0.1)
    ensure_topics(bootstrap)


def produce_user_state(bootstrap: str, prefs: list[dict], devices: list[dict]) -> None:
    client = producer(bootstrap)
    for topic, rows in ((PREFERENCES, prefs), (DEVICES, devices)):
        codec = codec_for(topic)
        produce_all(client, topic, [(routing_key(r), codec.encode(r)) for r in rows])


def produce_events(bootstrap: str, inputs: list[Input]) -> None:
    produce_all(producer(bootstrap), EVENTS, [(i.key, i.value) for i in inputs])


def ceiling(bootstrap: str, events: int) -> float:
    """consume -> decode -> encode -> produce over the same events, from the first record consumed
    to the acknowledgement of the last one produced."""
    ensure_topics(bootstrap, [TopicSpec("bench.ceiling", "NotificationRequested")])
    codec, out = codec_for(EVENTS), producer(bootstrap)
    # A new idempotent producer sends nothing until it has a producer id, which librdkafka asks for
    # on a 500 ms timer once it knows the brokers: timed cold, that wait was half the ceiling's time
    # (20,000 events: 20k/s cold, 50-60k/s warm). The flow's producer is warm when its timing
    # starts (it has read the users' state by then), so the ceiling's is too.
    out.produce("bench.ceiling", value=b"warm-up")
    if out.flush(30):
        raise SystemExit("the ceiling's producer could not reach the broker")
    acked, errors, last_ack = 0, [], 0.0

    def on_delivery(error, _message) -> None:
        nonlocal acked, last_ack
        if error is not None:
            errors.append(error)
        acked, last_ack = acked + 1, time.time()

    done, started = 0, None
    with TopicReader(bootstrap, [EVENTS]) as reader:
        while done < events:
            batch = reader.poll(1.0, max_messages=1000)
            if batch and started is None:
                started = time.time()
            for message in batch:
                try:
                    value = codec.encode(codec.decode(message.value()))
                except ValueError:
                    value = message.value()
                out.produce("bench.ceiling", key=message.key(), value=value, on_delivery=on_delivery)
                out.poll(0)
            done += len(batch)
    out.flush(30)
    if errors or acked != events:
        raise SystemExit(f"ceiling incomplete: {acked} of {events} outputs acknowledged, {len(errors)} failed"
                         + (f" (first: {errors[0]})" if errors else ""))
    return events / (last_ack - started)


@dataclass
class Ledger:
    """Which inputs the flow's outputs account for: a dead letter with the input's bytes, or a
    status for every user the input addresses (found by the request's created_at, which every
    status of it carries, merged or not)."""

    inputs: list[Input]
    waiting: dict[int, set[str]] = field(init=False)
    by_time: dict[datetime, int] = field(init=False)
    by_bytes: dict[bytes, int] = field(init=False)
    outputs: int = 0

    def __post_init__(self) -> None:
        self.waiting = {n: set(i.users) or {"(dead letter)"} for n, i in enumerate(self.inputs)}
        self.by_time = {i.created_at: n for n, i in enumerate(self.inputs)}
        self.by_bytes = {i.value: n for n, i in enumerate(self.inputs)}

    def read(self, reader: TopicReader) -> None:
        """Everything the reader gets until it has been idle for a second."""
        codecs = {STATUS: codec_for(STATUS), DLQ: codec_for(DLQ)}
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0:
            batch = reader.poll(0.5)
            if batch:
                idle_since = time.monotonic()
            for message in batch:
                self.outputs += 1
                record = codecs[message.topic()].decode(message.value())
                if message.topic() == DLQ:
                    self.waiting.pop(self.by_bytes.get(record["original"]), None)
                elif (n := self.by_time.get(record["created_at"])) in self.waiting:
                    self.waiting[n].discard(record["user_id"])
                    if not self.waiting[n]:
                        del self.waiting[n]

    def missing(self) -> str:
        if not self.waiting:
            return ""
        n, users = next(iter(self.waiting.items()))
        return (f"{len(self.waiting)} of {len(self.inputs)} inputs not accounted for "
                f"(e.g. input {n}, created_at {self.inputs[n].created_at.isoformat()}, waiting for {sorted(users)})")


@dataclass
class FlowRun:
    rate: float
    outputs: int
    state_bytes_per_user: float


def notes(probe: Path, suffix: str) -> list[list[float]]:
    return [[float(x) for x in path.read_text().split()] for path in probe.glob(f"*{suffix}")]


def flow_rate(urls: dict[str, str], inputs: list[Input], prefs: list[dict], devices: list[dict], workdir: Path,
              budget_s: float, processes: int) -> FlowRun:
    """On fresh topics: the users' state first, read by the flow before any request arrives (as in
    a running deployment, and as the same for every run), then the requests. Runs the flow until
    every input is accounted for; its rate from the first request consumed to the last
    acknowledgement, and its state once a snapshot covers every input."""
    bootstrap = urls["KAFKA_BOOTSTRAP_SERVERS"]
    fresh_topics(bootstrap)
    produce_user_state(bootstrap, prefs, devices)
    probe, recovery = workdir / f"probe-p{processes}", workdir / f"recovery-p{processes}"
    probe.mkdir()
    ledger, deadline = Ledger(inputs), time.monotonic() + budget_s
    with FlowProcess(PROBED_FLOW, recovery, workdir / f"flow-p{processes}.log", processes=processes,
                     snapshot_s=SNAPSHOT_S, env={**urls, "BENCH_PROBE_DIR": str(probe)}) as flow, \
            TopicReader(bootstrap, [STATUS, DLQ]) as reader, console.status(f"flow on {processes} process(es)"):
        while read_by_flow(probe, (PREFERENCES, DEVICES)) < len(prefs) + len(devices):
            if time.monotonic() > deadline:
                raise SystemExit(f"the flow did not read the users' state in {budget_s:.0f} s")
            flow.check()
            time.sleep(0.1)
        cpu = ProcessTreeCpu()
        produce_events(bootstrap, inputs)
        while True:
            wait_until_quiet(flow, probe, deadline)
            ledger.read(reader)
            if not ledger.missing():
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the flow is incomplete after {budget_s:.0f} s: {ledger.missing()}; "
                                 f"see {workdir}/flow-p{processes}.log")
        console.print(cpu_table(*cpu.used(), len(inputs)))
        started = min(first for (first,) in notes(probe, ".first"))
        ended = max(at for at, _ in notes(probe, ".acked"))
        active = {user for i in inputs for user in i.users}
        state = state_bytes_per_user(recovery, active, len(inputs), flow)
    return FlowRun(len(inputs) / (ended - started), ledger.outputs, state)


def read_by_flow(probe: Path, topics: tuple[str, ...]) -> int:
    counts = [line.split() for path in probe.glob("*.read") for line in path.read_text().splitlines()]
    return sum(int(n) for topic, n in counts if topic in topics)


def wait_until_quiet(flow: FlowProcess, probe: Path, deadline: float) -> None:
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        flow.check()
        written = sum(count for _, count in notes(probe, ".acked"))
        if written != last:
            last, since = written, time.monotonic()
        elif written and time.monotonic() - since >= QUIET_S:
            return
        time.sleep(0.25)


def state_bytes_per_user(recovery: Path, users: set[str], events: int, flow: FlowProcess) -> float:
    """Mean bytes of the latest per-user snapshot over `users`, once the snapshots of an epoch that
    read all `events` are committed (bytewax snapshots every SNAPSHOT_S seconds)."""
    deadline = time.monotonic() + 3 * SNAPSHOT_S + 10
    while time.monotonic() < deadline:
        flow.check()
        try:
            sizes = committed_sizes(recovery, events)
        except sqlite3.OperationalError:  # bytewax is writing it
            sizes = None
        if sizes is not None:
            return sum(sizes.get(user, 0) for user in users) / len(users)
        time.sleep(0.5)
    raise SystemExit(f"no committed snapshot covers all {events} inputs in {recovery}")


def committed_sizes(recovery: Path, events: int) -> dict[str, int] | None:
    """Per user, the size of the per-user step's latest committed snapshot, once the committed input
    offsets show every event read; else None."""
    parts = sorted(recovery.glob("part-*.sqlite3"))
    dbs = [sqlite3.connect(f"file:{part}?mode=ro", uri=True) for part in parts]
    try:
        # A resume starts from the epoch every partition of the store has committed.
        committed = min((epoch for db in dbs for (epoch,) in db.execute("SELECT commit_epoch FROM commits")),
                        default=-1)
        latest: dict[tuple[str, str], tuple[int, bytes | None]] = {}
        for db in dbs:
            for step, key, epoch, change in db.execute(
                    "SELECT step_id, state_key, snap_epoch, ser_change FROM snaps WHERE snap_epoch <= ?", (committed,)):
                if latest.get((step, key), (-1, None))[0] < epoch:
                    latest[(step, key)] = (epoch, change)
    finally:
        for db in dbs:
            db.close()
    read = sum(max(pickle.loads(change), 0) for (step, key), (_, change) in latest.items()
               if step == INPUT_STEP and key.endswith(f"-{EVENTS}") and change)
    if read < events:
        return None
    return {key: len(change or b"") for (step, key), (_, change) in latest.items() if step == PER_USER_STEP}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--processes", type=int, default=1, help="also run the flow on this many processes")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds a flow run may take at most")
    args = parser.parse_args()
    with LocalStack(on_step=lambda step: console.print(f"[dim]{step}[/]")) as stack, \
            tempfile.TemporaryDirectory(prefix="bench-flow-") as scratch:
        bootstrap = stack.urls["KAFKA_BOOTSTRAP_SERVERS"]
        inputs, prefs, devices = workload(args.events, args.users)
        produce_events(bootstrap, inputs)
        ceiling_eps = ceiling(bootstrap, args.events)
        console.print(f"ceiling: {ceiling_eps:,.0f} events/s")
        runs = {}
        for processes in sorted({1, args.processes}):
            runs[processes] = run = flow_rate(stack.urls, inputs, prefs, devices, Path(scratch), args.budget, processes)
            console.print(f"flow on {processes} process(es): {run.rate:,.0f} events/s ({run.outputs:,} statuses and "
                          f"dead letters, every input accounted for); {run.state_bytes_per_user:,.0f} snapshot "
                          "bytes per user sent something")
    one = runs[1]
    line = f"flow_eps={one.rate:.0f} ceiling_eps={ceiling_eps:.0f} ratio={one.rate / ceiling_eps:.2f}"
    if args.processes > 1:
        more = runs[args.processes]
        line += f" flow_eps_p{args.processes}={more.rate:.0f} speedup={more.rate / one.rate:.2f}"
    print(f"{line} state_bytes_per_user={one.state_bytes_per_user:.0f}")


if __name__ == "__main__":
    main()
