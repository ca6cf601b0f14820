"""Run calls at the same moment, each in its own thread and so on its own database
connection, for concurrency tests on PostgreSQL (optimistic concurrency, row locks)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection


def postgresql_only() -> None:
    """Skip unless the tests run on PostgreSQL: SQLite serialises writers, so no race."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions are a PostgreSQL matter; SQLite serialises writers")


def race(*calls: Any) -> tuple[list[Any], list[ValidationError]]:
    """Run each call in its own thread, released together by a barrier. Returns the results
    of those that returned and the ``ValidationError`` of those that were refused (any other
    exception fails the test when re-raised by the caller's assertions on counts)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = []
    errors: list[ValidationError] = []
    lock = threading.Lock()

    def run(fn: Any) -> None:
        try:
            barrier.wait()
            result = fn()
            with lock:
                results.append(result)
        except ValidationError as exc:
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(fn,)) for fn in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors
