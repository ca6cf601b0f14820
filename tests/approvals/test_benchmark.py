"""``python -m benchmarks.approvals`` stays runnable: its command line, its seed against the
current services, and one request each way through the real ASGI application (not the
benchmark's 200: no timings are asserted)."""

from __future__ import annotations

import asyncio

import pytest

from benchmarks import approvals as bench


def test_arguments() -> None:
    defaults = bench.parse_args([])
    assert (defaults.requests, defaults.waiters, defaults.workers) == (200, 50, 2)
    chosen = bench.parse_args(["--requests", "20", "--waiters", "5", "--workers", "1"])
    assert (chosen.requests, chosen.waiters, chosen.workers) == (20, 5, 1)
    with pytest.raises(SystemExit):
        bench.parse_args(["--waiters", "0"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--requests", "many"])


def test_percentile() -> None:
    values = [float(n) for n in range(1, 101)]
    assert bench.percentile(values, 0.5) == 51.0
    assert bench.percentile(values, 0.99) == 99.0
    assert bench.percentile([3.0], 0.99) == 3.0


@pytest.mark.django_db(transaction=True)
def test_one_request_each_way(asgi_server: str) -> None:
    seeded = bench.seed()
    results = asyncio.run(bench.run(asgi_server, seeded, requests=1, waiters=1))
    assert len(results.visible) == 1 and results.visible_missed == 0
    assert results.inbox_list
    assert {label: len(delays) for label, delays in results.wake.items()} == {
        "longpoll": 1,
        "poll_1s": 1,
    }
    assert results.wake_missed == {"longpoll": 0, "poll_1s": 0}
