"""Per-tool call rate limits (bundle ``tools[].rate_limit``: ``max_calls`` per ``per_s``,
per runtime), shared by every request a runtime serves.

A sliding window of call times per tool: exact, and small, since the windows the format
allows hold at most ``max_calls`` entries per tool. The clock is injectable for tests."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def acquire(self, tool: str, *, max_calls: int, per_s: float) -> bool:
        """Count one call of ``tool`` if the window has room; False (and nothing counted) if not."""
        with self._lock:
            now = self._clock()
            calls = self._calls.setdefault(tool, deque())
            while calls and now - calls[0] >= per_s:
                calls.popleft()
            if len(calls) >= max_calls:
                return False
            calls.append(now)
            return True
