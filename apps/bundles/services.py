"""Every write of the bundles app: authorised, validated, in one transaction, audited.

Pushing a version does not bump any environment's revision: a version reaches runtimes only
when a rollout or deployment makes it stable or candidate somewhere."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from apps.audit.services import Actor, actor_identity, audit_record
from apps.core import canonical
from apps.core.authz import authorize
from apps.core.reasons import require_reason
from apps.tenancy.models import Agent, Environment
from apps.tenancy.services import agent_lock, environment_lock, refuse_archived

from . import signing
from .models import (
    BundleVersion,
    CanonicalForm,
    Evaluation,
    GateRequirement,
    PromotionGate,
    SigningKey,
)
from .schema import SUITE_PATTERN
from .validation import ValidationResult, validate_content, validate_source


class BundleInvalid(ValidationError):
    """A bundle that failed validation: the errors by JSON pointer, and the warnings."""

    def __init__(self, result: ValidationResult, extra: dict[str, list[str]] | None = None) -> None:
        self.result = result
        self.errors_by_pointer = {**(extra or {}), **result.errors}
        super().__init__(self.errors_by_pointer)


@dataclass(frozen=True)
class PushResult:
    version: BundleVersion
    created: bool
    warnings: dict[str, list[str]]


# --------------------------------------------------------------------------- versions


def bundle_version_push(
    *,
    actor: Actor,
    agent: Agent,
    message: str,
    source: str | bytes | None = None,
    content: Any = None,
    source_format: str | None = None,
    parent_number: int | None = None,
) -> PushResult:
    """Store a bundle file (``source``: YAML or JSON text) or parsed data (``content``) as the
    agent's next version. Identical content returns the existing version (``created`` False)
    and stores nothing. Invalid content raises ``BundleInvalid`` and stores nothing."""
    authorize(actor, "bundles.add_bundleversion", agent.tenant)
    if (source is None) == (content is None):
        raise ValueError("give either source or content")
    if source is not None:
        result = validate_source(source, source_format=source_format)
        text = source if isinstance(source, str) else source.decode("utf-8-sig", "replace")
    else:
        result = validate_content(content)
        result.source_format, text = "json", ""
    message = (message or "").strip()
    extra = (
        {}
        if message
        else {"message": ["Say why: the message is kept with the version and in the audit log."]}
    )
    if not result.ok or extra or result.canonical is None or result.digest is None:
        raise BundleInvalid(result, extra)
    return _store_version(
        actor=actor,
        agent=agent,
        payload=result.canonical,
        digest=result.digest,
        result=result,
        text=text,
        message=message,
        parent_number=parent_number,
    )


@transaction.atomic
def _store_version(
    *,
    actor: Actor,
    agent: Agent,
    payload: bytes,
    digest: str,
    result: ValidationResult,
    text: str,
    message: str,
    parent_number: int | None,
) -> PushResult:
    # The agent's row lock makes concurrent pushes take numbers in turn.
    agent = agent_lock(agent_id=agent.pk)
    if agent.is_archived:
        raise ValidationError(
            {"agent": [f"{agent.slug} is archived; restore it before pushing versions."]}
        )
    # A version signed in the legacy canonical form has another digest for the same content:
    # pushing that content again must still find it rather than make a duplicate.
    digests = {digest}
    if result.content is not None:
        digests.add(canonical.digest(result.content, canonical.PYTHON_JSON))
    existing = (
        BundleVersion.objects.filter(agent=agent, digest__in=digests)
        .select_related("agent")
        .order_by("number")
        .first()
    )
    if existing is not None:
        return PushResult(existing, False, existing.warnings)
    versions = BundleVersion.objects.filter(agent=agent)
    latest = versions.order_by("-number").first()
    if parent_number is None:
        parent = latest
    else:
        parent = versions.filter(number=parent_number).first()
        if parent is None:
            raise ValidationError({"parent": [f"{agent.slug} has no version {parent_number}."]})
    kid, signature = signing.sign(payload)
    author, author_label = actor_identity(actor)
    version = BundleVersion.objects.create(
        agent=agent,
        number=(latest.number + 1) if latest else 1,
        parent=parent,
        digest=digest,
        canonical=payload.decode("utf-8"),
        canonical_form=CanonicalForm.RFC8785,
        source=text,
        source_format=result.source_format,
        signature=signature,
        signing_key_id=kid,
        message=message,
        warnings=result.warnings,
        author=author,
        author_label=author_label,
        created_at=timezone.now(),
    )
    audit_record(
        actor=actor,
        action="bundle_version.pushed",
        target=version,
        tenant=agent.tenant,
        reason=message,
        after=version.snapshot(),
    )
    return PushResult(version, True, result.warnings)


# --------------------------------------------------------------------------- evaluations


def _evaluation_errors(
    *, suite: str, passed: Any, failed: Any, score: Any, report_url: str
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not re.fullmatch(SUITE_PATTERN, suite or ""):
        errors["suite"] = [
            "Name the suite with 1-64 lowercase letters, digits, '_', '.' or '-' (e.g. golden)."
        ]
    for name, value in (("passed", passed), ("failed", failed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            errors[name] = ["A count: a whole number, 0 or more."]
    if "passed" not in errors and "failed" not in errors and passed + failed == 0:
        errors["passed"] = ["The run has no cases: passed + failed must be at least 1."]
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
    ):
        errors["score"] = ["A finite number, or leave it out."]
    if report_url:
        try:
            URLValidator(schemes=["http", "https"])(report_url)
        except ValidationError:
            errors["report_url"] = ["A link to the report: an http(s) URL."]
    return errors


@transaction.atomic
def evaluation_record(
    *,
    actor: Actor,
    version: BundleVersion,
    suite: str,
    passed: int,
    failed: int,
    score: float | None = None,
    report_url: str = "",
    run_id: str = "",
) -> tuple[Evaluation, bool]:
    """Attach one suite's results to a version. The same ``run_id`` posted again returns the
    stored evaluation (``created`` False); with different numbers it is refused, because
    evidence is never rewritten."""
    authorize(actor, "bundles.add_evaluation", version.agent.tenant)
    suite, run_id, report_url = (
        (suite or "").strip(),
        (run_id or "").strip(),
        (report_url or "").strip(),
    )
    errors = _evaluation_errors(
        suite=suite, passed=passed, failed=failed, score=score, report_url=report_url
    )
    if errors:
        raise ValidationError(errors)
    if run_id:
        existing = Evaluation.objects.filter(version=version, suite=suite, run_id=run_id).first()
        if existing is not None:
            same = (existing.passed, existing.failed, existing.score, existing.report_url) == (
                passed,
                failed,
                score,
                report_url,
            )
            if not same:
                raise ValidationError(
                    {
                        "run_id": [
                            f"Run {run_id!r} of {suite} is already recorded with "
                            "other results; evidence is never rewritten."
                        ]
                    }
                )
            return existing, False
    # new evidence about a frozen agent's versions is a change in it (a CI retry of a run
    # already recorded, above, still gets the stored result)
    refuse_archived(agent=agent_lock(agent_id=version.agent_id))
    user, label = actor_identity(actor)
    evaluation = Evaluation.objects.create(
        version=version,
        suite=suite,
        passed=passed,
        failed=failed,
        score=score,
        report_url=report_url,
        run_id=run_id,
        created_by=user,
        created_by_label=label,
        created_at=timezone.now(),
    )
    audit_record(
        actor=actor,
        action="evaluation.recorded",
        target=evaluation,
        target_label=f"{suite} on {version}",
        tenant=version.agent.tenant,
        after=evaluation.snapshot(),
    )
    return evaluation, True


# --------------------------------------------------------------------------- promotion gates


def _clean_requirements(requirements: list[dict[str, Any]]) -> dict[str, Decimal]:
    cleaned: dict[str, Decimal] = {}
    problems: list[str] = []
    for position, item in enumerate(requirements, start=1):
        suite = str(item.get("suite", "")).strip()
        if not re.fullmatch(SUITE_PATTERN, suite):
            problems.append(
                f"#{position}: name the suite with lowercase letters, digits, '_', '.' or '-'."
            )
            continue
        if suite in cleaned:
            problems.append(f"#{position}: {suite} is listed twice.")
            continue
        try:
            rate = Decimal(str(item.get("min_pass_rate")))
        except (InvalidOperation, ValueError):
            rate = Decimal("NaN")
        if not rate.is_finite() or not Decimal(0) <= rate <= Decimal(1):
            problems.append(
                f"#{position}: the minimum pass rate of {suite} is a share "
                "between 0 and 1 (0.95 = 95%)."
            )
            continue
        if rate != rate.quantize(Decimal("0.0001")):
            problems.append(
                f"#{position}: keep the pass rate of {suite} to four decimals (0.9525)."
            )
            continue
        cleaned[suite] = rate
    if problems:
        raise ValidationError({"requirements": problems})
    return cleaned


# Deploying past a failing promotion gate (granted to Admins; the rollouts app enforces it on
# deploys). Loosening a gate is the same decision.
GATE_OVERRIDE_PERMISSION = "rollouts.override_rollout_gate"


@transaction.atomic
def promotion_gate_set(
    *,
    actor: Actor,
    environment: Environment,
    requirements: list[dict[str, Any]],
    reason: str = "",
) -> PromotionGate:
    """Replace the environment's gate with ``requirements`` ([{suite, min_pass_rate}]). An
    empty list removes every requirement. Loosening the gate (a suite dropped, a minimum
    lowered) needs a reason and the permission to deploy past a failing gate
    (``GATE_OVERRIDE_PERMISSION``, Admins): it is the same decision, and an Operator who
    could drop the gate, deploy and put it back would hold the override without it. Raises
    ``ValidationError`` (requirements, reason, environment) and ``PermissionDenied``."""
    authorize(actor, "bundles.change_promotiongate", environment.tenant)
    wanted = _clean_requirements(requirements)
    environment = environment_lock(environment_id=environment.pk)
    if environment.is_archived:
        raise ValidationError({"environment": [f"{environment.name} is archived."]})
    gate = PromotionGate.objects.filter(environment=environment).first()
    current = {r.suite: r.min_pass_rate for r in gate.requirements.all()} if gate else {}
    if current == wanted:
        return gate or PromotionGate(environment=environment)
    loosened = [s for s in current if s not in wanted or wanted[s] < current[s]]
    if loosened:
        try:
            authorize(actor, GATE_OVERRIDE_PERMISSION, environment.tenant)
        except PermissionDenied:
            raise PermissionDenied(
                f"Your role may not loosen the promotion gate of {environment.name} "
                f"({', '.join(sorted(loosened))}): like deploying past it, that is an "
                "Admin's decision. Tightening it is yours."
            ) from None
        reason = require_reason(
            reason,
            message=f"This loosens the gate of {environment.name} "
            f"({', '.join(sorted(loosened))}); say why: the reason is kept in the audit log.",
        )
    _, label = actor_identity(actor)
    if gate is None:
        gate = PromotionGate.objects.create(environment=environment, updated_by_label=label)
        before = None
    else:
        before = gate.snapshot()
        gate.updated_by_label = label
        gate.save(update_fields=["updated_by_label", "updated_at"])
    gate.requirements.all().delete()
    GateRequirement.objects.bulk_create(
        [
            GateRequirement(gate=gate, suite=suite, min_pass_rate=rate)
            for suite, rate in sorted(wanted.items())
        ]
    )
    audit_record(
        actor=actor,
        action="promotion_gate.updated",
        target=gate,
        target_label=f"promotion gate of {environment.tenant.slug}/{environment.slug}",
        tenant=environment.tenant,
        reason=(reason or "").strip(),
        before=before,
        after=gate.snapshot(),
    )
    return gate


# --------------------------------------------------------------------------- signing keys


@transaction.atomic
def signing_key_activate(*, actor: Actor, reason: str = "") -> SigningKey:
    """Make the configured signing key (``SIGNING_KEY``, ``SIGNING_KEY_FILE``, or the embedded
    default, generated here on a fresh install) the active published key; the key it replaces
    stays published, retired. Idempotent: nothing is written (or audited) when it already is.
    Runs after every ``migrate`` (BundlesConfig's post-migrate hook) and from
    ``./manage.py signing_key activate``; ``sign()`` refuses until it has run. Raises
    ``ImproperlyConfigured`` when the configured key cannot be read."""
    authorize(actor, "bundles.add_signingkey")
    return signing.publish_active_key(actor=actor, reason=reason.strip())


@transaction.atomic
def signing_key_rotate(*, actor: Actor, reason: str) -> SigningKey:
    """A new embedded signing key becomes active; the old one stays published, retired."""
    authorize(actor, "bundles.add_signingkey")
    reason = require_reason(reason)
    signing.rotate_embedded_key()
    return signing.publish_active_key(actor=actor, reason=reason)
