"""Is a promotion gate met? (pure functions over requirements and evaluations)

A gate lists suites and minimum pass rates. For each suite the newest evaluation of the
version counts: a re-run replaces an earlier result, better or worse. Rollouts enforce the
gate; this module only answers and explains."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Protocol


class EvaluationLike(Protocol):
    @property
    def suite(self) -> str: ...
    @property
    def passed(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def pk(self) -> Any: ...


@dataclass(frozen=True)
class Requirement:
    suite: str
    min_pass_rate: Decimal


def percent(rate: Decimal | None) -> str:
    """A share (0-1) as a percentage with one or two decimals: "95.0%", "95.25%".

    Rounded down to the 0.01% grid that minimum pass rates live on (four decimals as a
    share), so a rate shown beside its minimum compares as the gate decided: 0.9995 against
    a required 0.9996 reads "99.95% < 99.96%", never "100.0% < 100.0%" (issue 8, kind 5).
    A minimum itself is shown exactly."""
    if rate is None:
        return "—"
    text = f"{(rate * 100).quantize(Decimal('0.01'), rounding=ROUND_FLOOR)}"
    return f"{text[:-1] if text.endswith('0') else text}%"


def rate_floor(rate: Decimal, places: int = 6) -> Decimal:
    """``rate`` cut (never rounded up) to ``places`` decimals, for an API that shows a pass
    rate as a number: 1999999 of 2000000 is 0.999999, not 1.0 beside an unmet minimum of 1."""
    return rate.quantize(Decimal(1).scaleb(-places), rounding=ROUND_FLOOR)


@dataclass(frozen=True)
class SuiteCheck:
    suite: str
    min_pass_rate: Decimal
    pass_rate: Decimal | None
    passed: int | None
    failed: int | None
    met: bool
    reason: str


@dataclass(frozen=True)
class GateStatus:
    environment_id: int
    environment_name: str
    configured: bool
    checks: tuple[SuiteCheck, ...] = field(default_factory=tuple)

    @property
    def met(self) -> bool:
        return all(check.met for check in self.checks)

    @property
    def state(self) -> str:
        """none (no gate), met, waiting (results missing) or failing."""
        if not self.configured:
            return "none"
        if self.met:
            return "met"
        if any(check.pass_rate is not None and not check.met for check in self.checks):
            return "failing"
        return "waiting"

    @property
    def summary(self) -> str:
        if not self.configured:
            return "no promotion gate"
        if self.met:
            return "gate met: " + ", ".join(
                f"{c.suite} {percent(c.pass_rate)}" for c in self.checks
            )
        return "; ".join(check.reason for check in self.checks if not check.met)


def latest_by_suite(evaluations: Iterable[EvaluationLike]) -> dict[str, EvaluationLike]:
    latest: dict[str, EvaluationLike] = {}
    for evaluation in evaluations:
        current = latest.get(evaluation.suite)
        if current is None or (evaluation.created_at, evaluation.pk or 0) > (
            current.created_at,
            current.pk or 0,
        ):
            latest[evaluation.suite] = evaluation
    return latest


def gate_evaluate(
    *,
    environment_id: int,
    environment_name: str,
    requirements: Sequence[Requirement] | None,
    evaluations: Iterable[EvaluationLike],
) -> GateStatus:
    """``requirements`` None means the environment has no gate."""
    if not requirements:
        return GateStatus(environment_id, environment_name, configured=False)
    latest = latest_by_suite(evaluations)
    checks = []
    for requirement in sorted(requirements, key=lambda r: r.suite):
        evaluation = latest.get(requirement.suite)
        needed = percent(requirement.min_pass_rate)
        if evaluation is None:
            checks.append(
                SuiteCheck(
                    requirement.suite,
                    requirement.min_pass_rate,
                    None,
                    None,
                    None,
                    False,
                    f"{requirement.suite}: no results yet (needs {needed})",
                )
            )
            continue
        total = evaluation.passed + evaluation.failed
        if total == 0:
            checks.append(
                SuiteCheck(
                    requirement.suite,
                    requirement.min_pass_rate,
                    None,
                    0,
                    0,
                    False,
                    f"{requirement.suite}: the latest run has no cases",
                )
            )
            continue
        rate = Decimal(evaluation.passed) / Decimal(total)
        met = rate >= requirement.min_pass_rate
        reason = (
            f"{requirement.suite}: {percent(rate)} ≥ {needed}"
            if met
            else f"{requirement.suite}: {percent(rate)} < {needed} required "
            f"({evaluation.failed} of {total} failed)"
        )
        checks.append(
            SuiteCheck(
                requirement.suite,
                requirement.min_pass_rate,
                rate,
                evaluation.passed,
                evaluation.failed,
                met,
                reason,
            )
        )
    return GateStatus(environment_id, environment_name, configured=True, checks=tuple(checks))
