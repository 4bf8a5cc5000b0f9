"""The crash soak, small: notification, in-app, push and webhook flow processes SIGKILLed at
random points and restarted from their recovery stores lose nothing, show nothing twice, and
dead-letter every garbage record.
`python -m bench.soak --notifications 100000 --kills 10` is the full one."""

from __future__ import annotations

import os

from bench.soak import run
from kernel.settings import SERVICE_VARS
from notifyflow.stack import LocalStack


def test_killed_and_restarted_flows_lose_nothing_and_show_nothing_twice(tmp_path):
    # Its own servers, not the session's: no other test's jobs on its topics.
    with LocalStack(environ={k: v for k, v in os.environ.items() if k not in SERVICE_VARS}) as stack:
        result = run(stack.urls, tmp_path, notifications=2_000, kills=4, seed=11)
    assert result.kills == 4
    assert (result.accepted, result.expected, result.garbage) == (2_000, 2_400, 20)
    assert (result.delivered, result.lost, result.duplicates) == (2_400, 0, 0)
    assert result.dlq == 20
