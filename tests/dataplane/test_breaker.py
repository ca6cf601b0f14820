from __future__ import annotations

import pytest

from dataplane.breaker import BreakerBoard, BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, cooldown_s=30, clock=clock)


def trip(subject: CircuitBreaker) -> None:
    for _ in range(subject.failure_threshold):
        subject.record_failure()


def test_breaker__new__closed_and_allows(clock: FakeClock) -> None:
    subject = breaker(clock)

    assert subject.state is BreakerState.CLOSED
    assert subject.allow()


def test_breaker__failures_below_threshold__stays_closed(clock: FakeClock) -> None:
    subject = breaker(clock)
    subject.record_failure()
    subject.record_failure()

    assert subject.state is BreakerState.CLOSED
    assert subject.allow()


def test_breaker__success_between_failures__resets_the_count(clock: FakeClock) -> None:
    subject = breaker(clock)
    subject.record_failure()
    subject.record_failure()
    subject.record_success()
    subject.record_failure()

    assert subject.state is BreakerState.CLOSED
    assert subject.failures == 1


def test_breaker__threshold_consecutive_failures__opens_and_refuses(clock: FakeClock) -> None:
    subject = breaker(clock)
    trip(subject)

    assert subject.state is BreakerState.OPEN
    assert not subject.allow()


def test_breaker__open_before_cooldown__still_refuses(clock: FakeClock) -> None:
    subject = breaker(clock)
    trip(subject)
    clock.now += 29.9

    assert subject.state is BreakerState.OPEN
    assert not subject.allow()


def test_breaker__after_cooldown__half_open_lets_one_probe(clock: FakeClock) -> None:
    subject = breaker(clock)
    trip(subject)
    clock.now += 30

    assert subject.state is BreakerState.HALF_OPEN
    assert subject.allow()
    assert not subject.allow()  # the probe is in flight


def test_breaker__probe_succeeds__closes(clock: FakeClock) -> None:
    subject = breaker(clock)
    trip(subject)
    clock.now += 30
    subject.allow()
    subject.record_success()

    assert subject.state is BreakerState.CLOSED
    assert subject.failures == 0
    assert subject.allow()


def test_breaker__probe_fails__reopens_for_a_new_cooldown(clock: FakeClock) -> None:
    subject = breaker(clock)
    trip(subject)
    clock.now += 30
    subject.allow()
    subject.record_failure()

    assert subject.state is BreakerState.OPEN
    assert not subject.allow()
    clock.now += 30
    assert subject.allow()


def test_breaker__lost_probe__expires_after_a_cooldown(clock: FakeClock) -> None:
    subject = breaker(clock)
    trip(subject)
    clock.now += 30
    subject.allow()
    clock.now += 30

    assert subject.allow()


def test_would_allow__half_open__does_not_claim_the_probe(clock: FakeClock) -> None:
    subject = breaker(clock)
    trip(subject)
    clock.now += 30

    assert subject.would_allow()
    assert subject.allow()


def test_board__report__one_entry_per_tool_with_state_and_failures(clock: FakeClock) -> None:
    board = BreakerBoard(failure_threshold=2, cooldown_s=10, clock=clock)
    board.get("search_orders").record_failure()
    board.get("search_orders").record_failure()
    board.get("lookup_order").record_success()

    assert board.report() == {
        "lookup_order": {"state": "closed", "failures": 0},
        "search_orders": {"state": "open", "failures": 2},
    }


def test_breaker__bad_settings__refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
