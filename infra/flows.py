"""Runs a dataflow the way it is deployed: `python -m bytewax.run` with a recovery store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from infra.stack import stop_process

FLOWS = {"notifications": "flows.notifications:flow"}


class FlowError(RuntimeError):
    pass


def init_recovery(directory: Path, partitions: int = 1) -> None:
    """Create the recovery store once; a store that exists is resumed from, never reset."""
    if directory.exists() and any(directory.glob("part-*.sqlite3")):
        return
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(directory), str(partitions)],
                   check=True, capture_output=True)


class FlowProcess:
    def __init__(self, name: str, recovery_dir: Path, log: Path, *, workers: int = 1,
                 snapshot_s: int = 2, env: dict[str, str] | None = None) -> None:
        self.command = [sys.executable, "-m", "bytewax.run", FLOWS[name], "-w", str(workers),
                        "-r", str(recovery_dir), "-s", str(snapshot_s), "-b", "0"]
        self.recovery_dir, self.log, self.env = recovery_dir, log, env
        self.process: subprocess.Popen | None = None

    def start(self) -> FlowProcess:
        init_recovery(self.recovery_dir)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(self.env or {})}, start_new_session=True)
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """Raise with the end of its log if the flow has died."""
        if self.process is not None and not self.running():
            tail = self.log.read_text(errors="replace")[-3000:]
            raise FlowError(f"{self.command[3]} exited with code {self.process.returncode}:\n{tail}")

    def kill(self) -> None:
        """A crash: no chance to flush or snapshot."""
        if self.running():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGINT)

    def __enter__(self) -> FlowProcess:
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()
