"""A circuit breaker per provider, so an outage fails fast instead of piling up retries.

Callers record only *transient* failures (timeouts, 5xx, 429, connection errors). Permanent
per-recipient failures (invalid or unregistered token, bad address, 4xx payload errors) say
nothing about the provider's health and must NOT be recorded: a batch of stale tokens would
otherwise open the circuit and stop deliveries to every healthy recipient.

Time is passed in (monotonic-style seconds); nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import Counter, Gauge

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# In the default registry, which the delivery flows' bytewax serves at :3030/metrics; the "open circuit"
# alert reads the gauge. Half-open counts as open: only trial calls get through until one succeeds.
OPEN_GAUGE = Gauge("notifyflow_circuit_open", "1 while the circuit is open or half-open, 0 once closed", ["circuit"])
OPENED = Counter("notifyflow_circuit_opened", "Times the circuit opened", ["circuit"])


class CircuitBreaker:
    def __init__(self, name: str, *, failure_threshold: int = 5, window_s: float = 30.0,
                 open_s: float = 30.0, half_open_max: int = 1) -> None:
        if failure_threshold < 1 or half_open_max < 1:
            raise ValueError("failure_threshold and half_open_max must be >= 1")
        if window_s <= 0 or open_s < 0:
            raise ValueError("window_s must be > 0 and open_s >= 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.window_s = window_s
        self.open_s = open_s
        self.half_open_max = half_open_max
        self.opened_count = 0
        self._state = CLOSED
        self._opened_at = 0.0
        self._failures: deque[float] = deque()  # times of recent failures while closed
        self._trials: deque[float] = deque()    # start times of half-open trial calls in flight

    def state(self, now: float) -> str:
        """"closed" | "open" | "half_open"; open becomes half_open once open_s has passed."""
        if self._state == OPEN and now - self._opened_at >= self.open_s:
            self._state = HALF_OPEN
            self._trials.clear()
        return self._state

    def trial_at(self, now: float) -> float:
        """When a call may next get through: now unless open, else when it turns half-open."""
        return self._opened_at + self.open_s if self.state(now) == OPEN else now

    def allow(self, now: float) -> bool:
        """closed: True; open: False; half_open: True for at most half_open_max trial calls in flight."""
        state = self.state(now)
        if state == CLOSED:
            return True
        if state == OPEN:
            return False
        # A trial whose outcome was never recorded (lost response, crashed task) would wedge the
        # breaker half-open forever; release its slot after open_s.
        while self._trials and now - self._trials[0] >= self.open_s:
            self._trials.popleft()
        if len(self._trials) >= self.half_open_max:
            return False
        self._trials.append(now)
        return True

    def record_success(self, now: float) -> None:
        """A half-open success closes the circuit and clears failures.

        While closed, a success does not erase earlier failures: the window counts failures, so a
        provider failing every other call still opens the circuit. A late success arriving while
        open (from a call started before it opened) is ignored.
        """
        if self.state(now) == HALF_OPEN:
            self._state = CLOSED
            self._failures.clear()
            self._trials.clear()
            OPEN_GAUGE.labels(self.name).set(0)

    def record_failure(self, now: float) -> None:
        """Count a transient failure in the sliding window; reaching failure_threshold opens the
        circuit; a failure while half-open re-opens it for a new open_s period."""
        state = self.state(now)
        if state == HALF_OPEN:
            self._open(now)
        elif state == CLOSED:
            self._failures.append(now)
            # The window is (now - window_s, now]: a failure exactly window_s old has expired.
            while self._failures and now - self._failures[0] >= self.window_s:
                self._failures.popleft()
            if len(self._failures) >= self.failure_threshold:
                self._open(now)
        # While open, late failures of calls started earlier must not extend the open period.

    def _open(self, now: float) -> None:
        self._state = OPEN
        self._opened_at = now
        self.opened_count += 1
        OPEN_GAUGE.labels(self.name).set(1)
        OPENED.labels(self.name).inc()
        self._failures.clear()
        self._trials.clear()

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state!r}, opened_count={self.opened_count})"


class Breakers(Mapping[str, CircuitBreaker]):
    """One CircuitBreaker per provider name, created on first use with shared settings:
    `Breakers(**settings)[name]`."""

    def __init__(self, **settings: Any) -> None:
        CircuitBreaker("settings-check", **settings)  # reject bad settings now, not at first outage
        self.settings = dict(settings)
        self._by_name: dict[str, CircuitBreaker] = {}

    def __getitem__(self, name: str) -> CircuitBreaker:
        breaker = self._by_name.get(name)
        if breaker is None:
            breaker = self._by_name[name] = CircuitBreaker(name, **self.settings)
        return breaker

    def __contains__(self, name: object) -> bool:  # Mapping's default would create the breaker
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)
