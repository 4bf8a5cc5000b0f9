"""Running the notifyflow command as a user would, against the session's stack."""

from __future__ import annotations

import os
import subprocess
import sys


def notifyflow(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # Wide enough that rich never wraps a table cell the assertions look for.
    env = {**(env or os.environ), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "notifyflow.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def api_key(tenant: str, sender: str, per_minute: int = 600) -> str:
    """A new API key for the sender, made with `notifyflow keys create` (the key is its last line)."""
    made = notifyflow("keys", "create", tenant, sender, "--per-minute", str(per_minute))
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]
