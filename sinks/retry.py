"""Retry policy for transient provider failures, and a queue of jobs waiting to retry.

Nothing here sleeps or reads a clock: callers pass `now` (monotonic-style seconds) and an
injectable `random.Random`, so delivery steps stay deterministic in tests and a waiting job
never blocks the other deliveries of the same worker.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with bounded jitter; a provider's Retry-After can only lengthen a wait."""

    # Base delay before retry n (1-based). len(delays) retries => len(delays) + 1 attempts in all.
    delays: tuple[float, ...] = (1, 2, 4, 8, 16)
    # +/- fraction of the base delay. Bounded jitter rather than "full jitter" (uniform(0, base)):
    # it still spreads a burst of retries apart but keeps every wait close to its documented value.
    jitter: float = 0.2
    # A misbehaving provider must not park a delivery for hours.
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if any(d < 0 for d in self.delays):
            raise ValueError("delays must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.max_retry_after < 0:
            raise ValueError("max_retry_after must be >= 0")

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt after `attempt` failed attempts (attempt >= 1),
        or None when no attempts are left. A provider's Retry-After wins when it is longer than
        the jittered delay (capped at max_retry_after)."""
        if attempt < 1:
            raise ValueError("attempt counts failed attempts and starts at 1")
        if attempt > len(self.delays):
            return None
        wait = self.delays[attempt - 1] * rng.uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is not None:
            wait = max(wait, min(max(retry_after, 0.0), self.max_retry_after))
        return wait


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """HTTP Retry-After: delta-seconds or an HTTP-date (RFC 9110); None if absent/unparseable; never negative.

    `now` should be timezone-aware; a naive `now` is taken as UTC.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # delta-seconds = 1*DIGIT (no sign, no fraction)
        try:
            return float(int(text))
        except OverflowError:  # absurdly long digit strings; the policy caps the wait anyway
            return float("inf")
    try:
        when = parsedate_to_datetime(text)  # IMF-fixdate, plus the obsolete RFC 850 and asctime forms
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # HTTP-dates are always GMT; asctime form and "-0000" come back naive.
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


class RetryQueue:
    """Jobs waiting for their next attempt, ordered by due time; nothing sleeps."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        # The counter breaks ties: FIFO among equal due times, and jobs themselves are never compared.
        self._seq = itertools.count()

    def push(self, due: float, job: Any) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), job))

    def pop_due(self, now: float) -> list:
        """Every job due at or before `now`, earliest first, FIFO among equal due times."""
        due: list = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
