"""Runs a dataflow the way it is deployed: `python -m bytewax.run` with a recovery store, or, for
analytics, `notifyflow analytics` (the flow and the dashboard in one process)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import httpx

from notifyflow.stack import free_port, stop_process, wait_until

FLOWS = {"notifications": "flows.notifications:flow"}


def delivery_flow(channel: str, lane: str) -> str:
    """The import string of the delivery flow for one channel and lane."""
    return f"flows.delivery:build({channel!r}, {lane!r})"


class FlowError(RuntimeError):
    pass


def init_recovery(directory: Path, partitions: int = 1) -> None:
    """Create the recovery store once; a store that exists is resumed from, never reset."""
    if directory.exists() and any(directory.glob("part-*.sqlite3")):
        return
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(directory), str(partitions)],
                   check=True, capture_output=True)


def executions(directory: Path) -> int:
    """How many times a dataflow has got going on this recovery store: bytewax registers each
    execution once the flow is built and resuming, after the process's imports."""
    counts = []
    for part in directory.glob("part-*.sqlite3"):
        # Not read-only: a store whose writer was SIGKILLed may need its WAL recovered to be read.
        with closing(sqlite3.connect(part, timeout=5)) as db:
            counts.append(db.execute("SELECT count(*) FROM exs").fetchone()[0])
    return max(counts, default=0)


class FlowProcess:
    """One dataflow (a FLOWS name or an import string): a single `bytewax.run` process, or a
    cluster of them on loopback (`processes`)."""

    def __init__(self, name: str, recovery_dir: Path, log: Path, *, processes: int = 1, workers: int = 1,
                 snapshot_s: int = 2, env: dict[str, str] | None = None) -> None:
        self.target, self.processes, self.workers = FLOWS.get(name, name), processes, workers
        self.options = ["-w", str(workers), "-r", str(recovery_dir), "-s", str(snapshot_s), "-b", "0"]
        self.recovery_dir, self.log, self.env = recovery_dir, log, env
        self.running_processes: list[subprocess.Popen] = []
        self.executions_before = 0

    def start(self) -> FlowProcess:
        init_recovery(self.recovery_dir, partitions=self.processes * self.workers)
        self.executions_before = executions(self.recovery_dir)
        cluster = []
        if self.processes > 1:
            addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(self.processes))
            cluster = [["-a", addresses, "-i", str(index)] for index in range(self.processes)]
        with open(self.log, "ab") as log:
            self.running_processes = [
                subprocess.Popen([sys.executable, "-m", "bytewax.run", self.target, *self.options, *extra],
                                 stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})},
                                 start_new_session=True)
                for extra in cluster or [[]]]
        return self

    def running(self) -> bool:
        return bool(self.running_processes) and all(p.poll() is None for p in self.running_processes)

    def executing(self) -> bool:
        """Its dataflow runs, not only its process: starting one takes seconds, and a minute or
        more on a loaded machine, before it can read or write anything."""
        return executions(self.recovery_dir) > self.executions_before

    def check(self) -> None:
        """Raise with the end of its log if the flow has died."""
        dead = [p for p in self.running_processes if p.poll() is not None]
        if dead:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise FlowError(f"{self.target} exited with code {dead[0].returncode}:\n{tail}")

    def kill(self) -> None:
        """A crash: no chance to flush or snapshot."""
        for process in self.running_processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop(self) -> None:
        for process in self.running_processes:
            stop_process(process, signal.SIGINT)

    def __enter__(self) -> FlowProcess:
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()


class AnalyticsProcess:
    """`notifyflow analytics` on a free loopback port, queried through its SQL endpoint like an analyst.

    In the embedded default it owns the chDB directory its CLICKHOUSE_URL names.
    """

    def __init__(self, recovery_dir: Path, log: Path, *, snapshot_s: float = 5.0,
                 env: dict[str, str] | None = None) -> None:
        self.recovery_dir, self.log, self.snapshot_s, self.env = recovery_dir, log, snapshot_s, env
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self, snapshot_s: float | None = None) -> AnalyticsProcess:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "notifyflow.cli", "analytics", "--port", str(port), "--recovery",
                 str(self.recovery_dir), "--snapshot", str(snapshot_s or self.snapshot_s)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})}, start_new_session=True)
        wait_until(lambda: httpx.get(f"{self.url}/health", timeout=1).raise_for_status(), "the analytics process",
                   self.process, self.log)
        return self

    def sql(self, query: str) -> list[list]:
        response = httpx.post(f"{self.url}/api/sql", content=query.encode(), timeout=60)
        if response.status_code != 200:
            raise FlowError(f"{query!r} failed: {response.text}")
        return response.json()["rows"]

    def check(self) -> None:
        """Raise with the end of its log if the process has died."""
        if self.process is not None and self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise FlowError(f"the analytics process exited with code {self.process.returncode}:\n{tail}")

    def kill(self) -> None:
        """A crash: no chance to flush or snapshot."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGINT)

    def __enter__(self) -> AnalyticsProcess:
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()
