"""Waiting for something another thread or process does (a runtime applying a revision, a
reporter flushing records): poll ``predicate`` until it holds or ``timeout`` seconds pass."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(predicate: Callable[[], object], timeout: float = 15.0, every: float = 0.05) -> bool:
    """True as soon as ``predicate()`` is truthy; after ``timeout`` seconds, its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())
