"""Sends per second per provider channel, ours against the bare protocol loop, in the same run.

    python -m bench.delivery [--jobs N | --long] [--channels webhook,fcm,...]

For each provider channel a local protocol peer (peers/: a signature-checking webhook receiver, FCM
HTTP v1, APNs over HTTP/2 with TLS and JWT, Web Push with VAPID and RFC 8291 decryption, SMTP, SES
and SNS via moto) starts in a process of its own (bench/peer.py), so it shares neither this
process's GIL nor its event loop, and two senders in this process send jobs to it:

- ours: the channel's provider through sinks/engine.py `Delivery` with real Redis claims, as the
  delivery flow runs it, handed BATCH jobs per call;
- the baseline: the bare protocol loop of bench/delivery_baseline.py: the same requests over the
  same client library at the same concurrency to the same peer, without the engine, claims, Redis
  or Kafka, handed the same BATCH jobs per call.

Push jobs carry one device each and email and SMS jobs one address, so a job is one send. Each side
first sends WARMUP untimed jobs, then they take turns, baseline, ours, ours, baseline, ... (2 * ROUNDS
turns each, an equal share of the jobs per turn), so that other work on the machine coming and going
falls on both alike. A turn is timed with time.perf_counter() from before its first call to after
its last (the jobs are built beforehand); a side's figure is its sends over its turns' seconds, and
the ratio is ours / baseline.

Every send is accounted for: after each turn the side must have reported every send as done and
the peer must have recorded exactly that many more, refusing none. Anything else fails the
benchmark (exit status 1, the reason on stderr) instead of printing a figure.

Each turn also counts the CPU time this process used (time.process_time: the engine, Redis claims,
the event loop thread) and the peer process used, per send: what one sending process could do with
a peer that kept up is 1e6 / <channel>_cpu_us_per_send sends per second.

The in-app channel (PostgreSQL upsert and Redis publish, no provider protocol, so no baseline) is
measured alone at the end: every job must come back `delivered` with its row stored.

Last line: <channel>_sends_per_s=<ours> <channel>_ratio=<ours/baseline> for each provider channel,
then <channel>_baseline_per_s=<baseline> for each, <channel>_cpu_us_per_send=<ours> for each, and
in_app_sends_per_s=<n>.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from rich.console import Console

from bench.delivery_setup import CHANNELS, Channel, in_app
from bench.peer import PeerProcess
from notifyflow.migrate import migrate_postgres
from notifyflow.stack import Postgres, Valkey

console = Console(stderr=True)
BATCH = 500  # jobs per call, as a delivery flow's poll might bring them
WARMUP = 50  # untimed jobs per side first: connections, tokens, sessions
ROUNDS = 4  # each side's timed jobs go in 2 * ROUNDS turns, the sides alternating
# Timed jobs per side and channel by default (2-6 s per side each on an idle 2-core machine), so
# that the whole run, services and peers started, takes about a minute; --long runs LONG times as many.
IN_APP_JOBS = 2000
DEFAULT_JOBS = {"webhook": 3000, "fcm": 2500, "apns": 600, "webpush": 1200, "smtp": 400, "ses": 200, "sms": 300}
LONG = 5


class BenchFailure(Exception):
    """A send failed or went missing: no figure is printed."""


@contextmanager
def services() -> Iterator[dict[str, str]]:
    """PostgreSQL (webhook endpoints, email suppressions) and Redis (claims): started here unless
    DATABASE_URL and REDIS_URL name running ones."""
    urls, started = {}, []
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as workdir:
        try:
            for service in (Postgres(), Valkey()):
                urls[service.env_var] = os.environ.get(service.env_var) or ""
                if not urls[service.env_var]:
                    console.print(f"[dim]starting {service.name}[/]")
                    urls[service.env_var] = service.start(Path(workdir))
                    started.append(service)
            migrate_postgres(urls["DATABASE_URL"])
            yield urls
        finally:
            for service in reversed(started):
                service.stop()


def turn(send: Callable[[list[dict]], int], jobs: list[dict]) -> tuple[int, float, float]:
    """(sends reported done, seconds, CPU seconds of this process) for the jobs, BATCH at a time."""
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    for start in range(0, len(jobs), BATCH):
        done += send(jobs[start:start + BATCH])
    return done, time.perf_counter() - started, time.process_time() - cpu


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(channel: Channel, peer: PeerProcess, count: int) -> dict[str, dict[str, float]]:
    """Per side (ours, baseline): sends per second, this process's CPU microseconds per send and the
    peer's, for `count` jobs each, every send accounted for."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(channel.bare.open())
        try:
            sides = {"baseline": lambda batch: loop.run_until_complete(channel.bare.send(batch)), "ours": channel.ours}
            jobs = {side: channel.jobs(WARMUP + count) for side in sides}
            recorded = peer.call("count")[channel.key]
            totals = {side: [0, 0.0, 0.0, 0.0] for side in sides}  # sends, seconds, our CPU, the peer's CPU
            # Warm-up first (untimed), then turns in rounds, baseline first in one round and ours
            # first in the next, so that load that comes and goes falls on both sides alike.
            bounds = [WARMUP + count * n // (2 * ROUNDS) for n in range(2 * ROUNDS + 1)]
            plan = [("baseline", 0, WARMUP, False), ("ours", 0, WARMUP, False)]
            for n in range(2 * ROUNDS):
                order = ("baseline", "ours") if n % 2 == 0 else ("ours", "baseline")
                plan += [(side, bounds[n], bounds[n + 1], True) for side in order]
            for side, start, end, timed in plan:
                segment, peer_cpu = jobs[side][start:end], cpu_seconds(peer.pid)
                done, seconds, cpu = turn(sides[side], segment)
                peer_cpu = cpu_seconds(peer.pid) - peer_cpu
                answer = peer.call("count")
                if done != len(segment):
                    raise BenchFailure(f"{channel.name} {side}: {len(segment) - done} of {len(segment)} sends failed")
                if answer[channel.key] != recorded + done or answer["rejected"] or answer.get("duplicates"):
                    raise BenchFailure(f"{channel.name} {side}: {done} sends reported done, but the peer recorded "
                                       f"{answer[channel.key] - recorded} (refused {answer['rejected']}, "
                                       f"duplicates {answer.get('duplicates', 0)})")
                recorded = answer[channel.key]
                if timed:
                    for n, value in enumerate((done, seconds, cpu, peer_cpu)):
                        totals[side][n] += value
            return {side: {"per_s": done / seconds, "cpu_us": 1e6 * cpu / done, "peer_cpu_us": 1e6 * peer / done}
                    for side, (done, seconds, cpu, peer) in totals.items()}
        finally:
            loop.run_until_complete(channel.bare.close())
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--jobs", type=int, help="timed jobs per side for every channel (default: per channel, "
                      + ", ".join(f"{name} {count}" for name, count in DEFAULT_JOBS.items()) + ")")
    size.add_argument("--long", action="store_true", help=f"{LONG} times the default jobs (several minutes)")
    parser.add_argument("--channels", default=",".join([*CHANNELS, "in_app"]), help="comma-separated (default: all)")
    args = parser.parse_args()
    names = [name.strip() for name in args.channels.split(",") if name.strip()]
    if unknown := set(names) - {*CHANNELS, "in_app"}:
        parser.error(f"unknown channels {sorted(unknown)}; channels: {', '.join(CHANNELS)}, in_app")
    if args.jobs is not None and args.jobs < 2 * ROUNDS:
        parser.error(f"--jobs must be at least {2 * ROUNDS} (one per turn)")
    figures: dict[str, dict[str, dict[str, float]]] = {}
    in_app_rate = None
    try:
        with services() as urls:
            for name in (name for name in names if name in CHANNELS):
                kind, setup = CHANNELS[name]
                count = args.jobs or DEFAULT_JOBS[name] * (LONG if args.long else 1)
                with ExitStack() as cleanup:
                    peer = cleanup.enter_context(PeerProcess(kind))
                    figures[name] = measure(setup(peer, urls, cleanup), peer, count)
                ours, baseline = figures[name]["ours"], figures[name]["baseline"]
                console.print(f"{name}: ours {ours['per_s']:,.0f} sends/s, baseline {baseline['per_s']:,.0f} sends/s, "
                              f"ratio {ours['per_s'] / baseline['per_s']:.2f} ({count} sends each); CPU per send: "
                              f"ours {ours['cpu_us']:,.0f} us, baseline {baseline['cpu_us']:,.0f} us, the peer "
                              f"{ours['peer_cpu_us']:,.0f} us / {baseline['peer_cpu_us']:,.0f} us")
            if "in_app" in names:
                count = args.jobs or IN_APP_JOBS * (LONG if args.long else 1)
                delivered, seconds = in_app(urls, count)
                if delivered != count:
                    raise BenchFailure(f"in_app: {count - delivered} of {count} jobs not delivered or not stored")
                in_app_rate = delivered / seconds
                console.print(f"in_app: {in_app_rate:,.0f} sends/s ({count} sends; no provider protocol, no baseline)")
    except BenchFailure as failure:
        print(f"bench.delivery FAILED: {failure}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(" ".join([f"{name}_sends_per_s={f['ours']['per_s']:.0f} {name}_ratio={f['ours']['per_s'] / f['baseline']['per_s']:.2f}"
                    for name, f in figures.items()]
                   + [f"{name}_baseline_per_s={f['baseline']['per_s']:.0f}" for name, f in figures.items()]
                   + [f"{name}_cpu_us_per_send={f['ours']['cpu_us']:.0f}" for name, f in figures.items()]
                   + ([f"in_app_sends_per_s={in_app_rate:.0f}"] if in_app_rate is not None else [])))


if __name__ == "__main__":
    main()
