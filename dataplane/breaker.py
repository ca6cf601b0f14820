"""Per-tool circuit breakers: stop calling a failing dependency, probe it, recover.

closed --N consecutive failures--> open --cool-down--> half_open --probe ok--> closed
                                    ^                        |
                                    +------probe fails-------+

The states are reported in heartbeats, so operators see a failing dependency on the Runtimes
page before users report it. Time comes from an injectable monotonic clock so tests drive the
cool-down without sleeping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self, *, failure_threshold: int = 5, cooldown_s: float = 30.0, clock: Clock = time.monotonic
    ) -> None:
        if failure_threshold < 1 or cooldown_s < 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s >= 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None

    def _cooled_down(self, now: float) -> bool:
        return now - self._opened_at >= self.cooldown_s

    @property
    def state(self) -> BreakerState:
        with self._lock:
            if self._state is BreakerState.OPEN and self._cooled_down(self._clock()):
                # Reported as half-open from the moment a probe would be let through.
                return BreakerState.HALF_OPEN
            return self._state

    @property
    def failures(self) -> int:
        with self._lock:
            return self._failures

    def would_allow(self) -> bool:
        """Whether a call could go through now, without claiming the half-open probe."""
        with self._lock:
            return self._admits(self._clock())

    def _admits(self, now: float) -> bool:
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            return self._cooled_down(now)
        # Half-open lets one probe through at a time. A probe whose result never came back (the
        # caller crashed) must not wedge the breaker, so it expires after one cool-down.
        return self._probe_started is None or now - self._probe_started >= self.cooldown_s

    def allow(self) -> bool:
        """Claim the right to call: always when closed, the single probe when half-open."""
        with self._lock:
            now = self._clock()
            if not self._admits(now):
                return False
            if self._state is not BreakerState.CLOSED:
                self._state = BreakerState.HALF_OPEN
                self._probe_started = now
            return True

    def record_success(self) -> None:
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._probe_started = None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            half_open = self._state is BreakerState.HALF_OPEN
            if half_open or self._failures >= self.failure_threshold:
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self._probe_started = None

    def report(self) -> dict[str, Any]:
        return {"state": self.state.value, "failures": self.failures}


class BreakerBoard:
    """One breaker per tool, created on first use, shared by every request of a runtime."""

    def __init__(
        self, *, failure_threshold: int = 5, cooldown_s: float = 30.0, clock: Clock = time.monotonic
    ) -> None:
        self._settings = {"failure_threshold": failure_threshold, "cooldown_s": cooldown_s}
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, tool: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(tool)
            if breaker is None:
                breaker = CircuitBreaker(
                    failure_threshold=int(self._settings["failure_threshold"]),
                    cooldown_s=float(self._settings["cooldown_s"]),
                    clock=self._clock,
                )
                self._breakers[tool] = breaker
            return breaker

    def report(self) -> dict[str, dict[str, Any]]:
        """``{tool: {"state": ..., "failures": n}}`` for the heartbeat."""
        with self._lock:
            breakers = dict(self._breakers)
        return {tool: breaker.report() for tool, breaker in sorted(breakers.items())}
