"""CPU used by a benchmark and every process it started (the local servers, the flows, the gateway),
by kind, over a stretch of the run: on a machine where all of them share the cores, where the CPU
goes says what a figure is limited by."""

from __future__ import annotations

import time

import psutil
from rich.table import Table

# What a process is, from the first matching part of its command line; anything else is the benchmark.
KINDS = (("tansu", "Kafka broker (Tansu)"), ("postgres", "PostgreSQL"), ("valkey", "Valkey"),
         ("flows.notifications", "notification flow"), ("bench.probe", "notification flow"),
         ("flows.delivery", "delivery flows"),
         ("notifyflow.cli gateway", "gateway"), ("notifyflow.cli analytics", "analytics"))


def kind(process: psutil.Process) -> str:
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    return next((name for part, name in KINDS if part in command), "this benchmark")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


class ProcessTreeCpu:
    """Started now; `used()` is each kind's CPU seconds since then (a process started meanwhile
    counts from its start, one that ended meanwhile is not counted)."""

    def __init__(self) -> None:
        self.started_at, self.at_start = time.monotonic(), self.read()

    @staticmethod
    def read() -> dict[int, tuple[str, float]]:
        me = psutil.Process()
        figures = {}
        for process in (me, *me.children(recursive=True)):
            try:
                figures[process.pid] = (kind(process), cpu_seconds(process))
            except psutil.Error:
                continue
        return figures

    def used(self) -> tuple[dict[str, float], float]:
        """CPU seconds by kind, and the wall seconds they were used in."""
        now, by_kind = self.read(), {}
        for pid, (name, seconds) in now.items():
            before = self.at_start.get(pid, (name, 0.0))[1]
            by_kind[name] = by_kind.get(name, 0.0) + seconds - before
        return by_kind, time.monotonic() - self.started_at


def cpu_table(by_kind: dict[str, float], wall_s: float, requests: int) -> Table:
    table = Table("process", "CPU s", "ms per request", "cores", title=f"where the CPU goes ({wall_s:.0f} s, "
                  f"{psutil.cpu_count()} cores)")
    for name, seconds in sorted(by_kind.items(), key=lambda entry: -entry[1]):
        table.add_row(name, f"{seconds:.1f}", f"{seconds / max(requests, 1) * 1000:.2f}", f"{seconds / wall_s:.2f}")
    table.add_row("all", f"{sum(by_kind.values()):.1f}", f"{sum(by_kind.values()) / max(requests, 1) * 1000:.2f}",
                  f"{sum(by_kind.values()) / wall_s:.2f}")
    return table
