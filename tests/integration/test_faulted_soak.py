"""The soak with dependency faults, small: while flow processes are SIGKILLed, PostgreSQL and Valkey
restart on their data and port and the gateway is killed and started again; the flows wait them out
by themselves, every notification reaches the center, the phones and the webhook once, and every device
connected through the gateway (reconnecting with its last event id) is shown each of its notifications
once. `python -m bench.soak --faults` is the bigger one."""

from __future__ import annotations

import os

from bench.soak import run
from kernel.settings import SERVICE_VARS
from notifyflow.stack import LocalStack


def test_dependencies_restarting_lose_nothing_and_show_nothing_twice(tmp_path):
    # Its own servers: they are restarted here, under no other test.
    with LocalStack(environ={k: v for k, v in os.environ.items() if k not in SERVICE_VARS}) as stack:
        result = run(stack.urls, tmp_path, notifications=1_000, kills=1, seed=5, faults=3, stack=stack)
    assert (result.faults, result.kills) == (3, 1)  # PostgreSQL, Valkey and the gateway, in some order
    # 1,000 in-app, 50 webhooks, 150 pushes, and 200 on the devices of the 40 connected users
    assert (result.accepted, result.expected, result.garbage) == (1_000, 1_400, 10)
    assert (result.delivered, result.lost, result.duplicates) == (1_400, 0, 0)
    assert result.dlq == 10
    assert result.reconnects >= 40  # every device reconnected at least once (the gateway was killed)
