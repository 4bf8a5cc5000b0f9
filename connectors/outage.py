"""Waiting out a dependency that went away: PostgreSQL or Redis restarting, failing over, or out of
reach for a while. The call is made again with capped exponential backoff until it succeeds, so a
flow stalls while a dependency is away and carries on by itself when it is back, dropping nothing
(bytewax holds the records meanwhile). Only errors that say "the server is not there" are waited
out; a bad query still fails at once."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import redis

T = TypeVar("T")
log = logging.getLogger(__name__)
# Connection refused or reset, "the database system is starting up / shutting down", terminated by
# an administrator, a pool with no connection to give; Redis loading its data (BusyLoadingError is a
# ConnectionError). After a restart a pipelined script's SHA is unknown until it is loaded again.
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, redis.ConnectionError, redis.TimeoutError,
             redis.exceptions.NoScriptError)
FIRST_DELAY_S, MAX_DELAY_S = 0.1, 5.0
REPEAT_LOG_S = 30.0  # an outage is logged when it starts, then this often, then when it ends


def until_back(call: Callable[[], T], what: str, *, on_error: Callable[[Exception], None] | None = None,
               give_up_s: float | None = None, sleep: Callable[[float], None] = time.sleep) -> T:
    """call() until it returns; `on_error` cleans up after each failure (e.g. drops a broken
    connection so the next call makes a new one); `give_up_s` re-raises once it has failed that long."""
    delay, since, logged = FIRST_DELAY_S, None, 0.0
    while True:
        try:
            result = call()
        except TRANSIENT as exc:
            now = time.monotonic()
            if since is None:
                since = logged = now
                log.warning("%s unavailable, retrying: %s", what, one_line(exc))
            elif now - logged >= REPEAT_LOG_S:
                logged = now
                log.warning("%s still unavailable after %.0f s: %s", what, now - since, one_line(exc))
            if give_up_s is not None and now - since >= give_up_s:
                raise
            if on_error is not None:
                on_error(exc)
            sleep(delay * random.uniform(0.8, 1.2))  # jittered, so processes do not retry in step
            delay = min(MAX_DELAY_S, delay * 2)
            continue
        if since is not None:
            log.warning("%s back after %.1f s", what, time.monotonic() - since)
        return result


def one_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
