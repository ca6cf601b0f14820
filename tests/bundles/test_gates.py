"""Whether a promotion gate is met, and why not (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from apps.bundles.gates import Requirement, gate_evaluate

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Run:
    suite: str
    passed: int
    failed: int
    created_at: datetime = T0
    pk: int | None = None


GATE = [Requirement("golden", Decimal("0.95")), Requirement("adversarial", Decimal("0.9"))]


def _evaluate(requirements, runs):  # type: ignore[no-untyped-def]
    return gate_evaluate(
        environment_id=1, environment_name="Production", requirements=requirements, evaluations=runs
    )


def test_gate__no_requirements__not_configured_and_met() -> None:
    status = _evaluate(None, [])
    assert (status.configured, status.met, status.state, status.summary) == (
        False,
        True,
        "none",
        "no promotion gate",
    )


def test_gate__all_suites_pass__met() -> None:
    status = _evaluate(GATE, [Run("golden", 95, 5), Run("adversarial", 90, 10)])
    assert status.met and status.state == "met"
    assert status.summary == "gate met: adversarial 90.0%, golden 95.0%"


def test_gate__missing_results__waiting_and_says_which() -> None:
    status = _evaluate(GATE, [Run("golden", 99, 1)])
    assert not status.met and status.state == "waiting"
    assert status.summary == "adversarial: no results yet (needs 90.0%)"


def test_gate__below_minimum__failing_and_says_by_how_much() -> None:
    status = _evaluate(GATE, [Run("golden", 94, 6), Run("adversarial", 95, 5)])
    assert status.state == "failing"
    assert status.summary == "golden: 94.0% < 95.0% required (6 of 100 failed)"


def test_gate__newest_run_of_a_suite_counts__better_or_worse() -> None:
    runs = [
        Run("golden", 100, 0, T0, 1),
        Run("golden", 80, 20, T0 + timedelta(hours=1), 2),
        Run("adversarial", 9, 1),
    ]
    assert _evaluate(GATE, runs).state == "failing"
    runs.append(Run("golden", 96, 4, T0 + timedelta(hours=2), 3))
    assert _evaluate(GATE, runs).state == "met"


def test_gate__run_without_cases__not_met() -> None:
    status = _evaluate([Requirement("golden", Decimal("0"))], [Run("golden", 0, 0)])
    assert not status.met and "no cases" in status.summary
