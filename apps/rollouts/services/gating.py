"""The promotion gate, enforced: a deploy and a rollout start of a version into an
environment whose gate the version does not meet are refused (``GateNotMet``, one line per
unmet suite), unless an actor who may (``rollouts.override_rollout_gate``: Admins) gives an
override reason, which the caller records in its audit event. A rollback is never gated: it
goes back to a version that already served there (on-call needs the one button to work)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

from apps.audit.services import Actor
from apps.bundles.gates import GateStatus, percent
from apps.bundles.models import BundleVersion
from apps.bundles.selectors import promotion_gate_check
from apps.core.authz import authorize
from apps.core.refusals import GateNotMet
from apps.tenancy.models import Environment

OVERRIDE_PERMISSION = "rollouts.override_rollout_gate"


def gate_document(gate: GateStatus) -> dict[str, Any]:
    """A gate's state as JSON: ``{environment, state, met, checks: [{suite, min_pass_rate,
    min_pass_rate_percent, pass_rate, pass_rate_percent, passed, failed, met, reason}]}``;
    rates are shares (0-1, as strings: exact decimals), beside their percentages."""
    return {
        "environment": gate.environment_name,
        "state": gate.state,
        "met": gate.met,
        "checks": [
            {
                "suite": check.suite,
                "min_pass_rate": str(check.min_pass_rate),
                "min_pass_rate_percent": percent(check.min_pass_rate),
                "pass_rate": str(check.pass_rate) if check.pass_rate is not None else None,
                "pass_rate_percent": percent(check.pass_rate)
                if check.pass_rate is not None
                else None,
                "passed": check.passed,
                "failed": check.failed,
                "met": check.met,
                "reason": check.reason,
            }
            for check in gate.checks
        ],
    }


def gate_enforce(
    *,
    actor: Actor,
    version: BundleVersion,
    environment: Environment,
    override_reason: str,
    field: str,
    what: str,
    failures: list[str] | None = None,
) -> tuple[str, list[str]]:
    """Refuse ``what`` ("deploy", "start a rollout of") ``version`` into ``environment``
    unless its promotion gate is met — or ``override_reason`` is given by an actor allowed
    to override. ``failures``: the lines that refuse it (default: the gate's unmet suites;
    rollouts add their own). Returns ``(override, failures)`` to record in the audit event,
    both empty when nothing failed. Raises ``GateNotMet`` keyed by ``field`` (no reason
    given) and ``PermissionDenied`` (a reason given by an actor who may not override)."""
    gate = promotion_gate_check(version=version, environment=environment)
    if failures is None:
        failures = [c.reason for c in gate.checks if not c.met] if gate.configured else []
    if not failures:
        return "", []
    override = override_reason.strip()
    if not override:
        raise GateNotMet(
            field=field,
            summary=f"Not allowed to {what} v{version.number} in {environment.name} yet: "
            f"{'; '.join(failures)}. An Admin may override the gate, giving a reason.",
            lines=failures,
            gate=gate_document(gate),
        )
    try:
        authorize(actor, OVERRIDE_PERMISSION, environment.tenant)
    except PermissionDenied:
        raise PermissionDenied(
            f"Your role may not {what} a version past a failing promotion gate: ask an Admin "
            f"({'; '.join(failures)})."
        ) from None
    return override, failures
