"""Approval requests: opened and cancelled by runtimes, decided by approvers, expired and
escalated by the beat. Every change goes through ``_transition`` (the state machine of
``models.TRANSITIONS``) or ``_escalate``, runs in one transaction under a row lock, is
audited, and is announced (``approval.changed``) so waiting runtimes wake."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.alerts.services import alert_raise
from apps.audit.services import Actor, actor_identity, audit_record
from apps.bundles.models import BundleVersion
from apps.bundles.schema import TOOL_NAME_PATTERN
from apps.core.canonical import CanonicalError, canonical_json
from apps.core.input_guards import json_problems
from apps.core.locks import lock_row
from apps.rollouts.models import Deployment
from apps.rollouts.selectors import deployment_current, rollout_active
from apps.tenancy.models import Agent, Environment
from apps.tenancy.services import refuse_archived

from ..contract import REDACTED, assess, declared_risk, sensitive_paths
from ..models import (
    BULK_RISKS,
    RISKS,
    TRANSITIONS,
    ApprovalQueue,
    ApprovalRequest,
    ApprovalVote,
    Status,
)
from ._common import SYSTEM, announce, approval_json, control_character_problem, runtime_actor
from .queues import may_decide, queue_route

log = structlog.get_logger(__name__)
_ID = re.compile(r"[\w.:@/-]{1,128}", re.ASCII)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SLUG = re.compile(r"[\w-]{1,100}", re.ASCII)
_TOOL = re.compile(TOOL_NAME_PATTERN)
MAX_ARGUMENTS_BYTES = 16 * 1024
MAX_ARGUMENTS_DEPTH = 32  # objects and arrays inside one another: no tool's arguments need more
MAX_REASON = 2000
MAX_EXCERPT_ITEMS = 20
MAX_EXCERPT_CHARS = 2000
EXCERPT_ROLES = ("user", "assistant", "tool", "system")


class UnknownAgent(Exception):
    """The agent named is not in the runtime token's scope."""


class IdempotencyConflict(Exception):
    """The idempotency key names a request for another tool or other arguments."""


class SessionLimit(Exception):
    """The session already holds the queue's limit of open requests."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AlreadyDecided(Exception):
    """The request is final (or this approver already voted); the message says who decided
    what, when."""

    def __init__(self, message: str, request: ApprovalRequest) -> None:
        super().__init__(message)
        self.request = request


@dataclass(frozen=True)
class Opened:
    """What ``approval_open`` returns: the request and whether this call created it."""

    request: ApprovalRequest
    created: bool


# ------------------------------------------------------------------ runtime: open


def _text(body: Mapping[str, Any], name: str, limit: int, errors: dict[str, list[str]]) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        errors[name] = [f"Text of at most {limit:,} characters."]
        return ""
    problem = control_character_problem(value)
    if problem:
        errors[name] = [problem]
        return ""
    return value


def _excerpt(value: Any, errors: dict[str, list[str]]) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_EXCERPT_ITEMS:
        errors["excerpt"] = [f"A list of at most {MAX_EXCERPT_ITEMS} messages."]
        return []
    result = []
    for index, item in enumerate(value):
        if (
            not isinstance(item, dict)
            or set(item) - {"role", "content"}
            or item.get("role") not in EXCERPT_ROLES
            or not isinstance(item.get("content"), str)
            or len(item["content"]) > MAX_EXCERPT_CHARS
        ):
            errors[f"excerpt[{index}]"] = [
                f"{{role: {'|'.join(EXCERPT_ROLES)}, content: text of at most "
                f"{MAX_EXCERPT_CHARS:,} characters}}."
            ]
            return []
        if control_character_problem(item["content"]):
            errors[f"excerpt[{index}]"] = [str(control_character_problem(item["content"]))]
            return []
        result.append({"role": item["role"], "content": item["content"]})
    return result


def open_validate(body: Mapping[str, Any]) -> dict[str, Any]:
    """Check a runtime's request body (docs/approvals.md, "Open a request"); returns the
    cleaned fields. Raises ``ValidationError`` keyed by field."""
    errors: dict[str, list[str]] = {}
    fields: dict[str, Any] = {}
    for name in ("idempotency_key", "session_id"):
        value = body.get(name)
        if not isinstance(value, str) or not _ID.fullmatch(value):
            errors[name] = ["1 to 128 of letters, digits and . : @ / - _"]
        fields[name] = value
    request_id = body.get("request_id")
    if request_id is not None and (
        not isinstance(request_id, str) or not _ID.fullmatch(request_id)
    ):
        errors["request_id"] = ["1 to 128 of letters, digits and . : @ / - _"]
    fields["request_id"] = request_id or ""
    runtime_id = body.get("runtime_id")
    if runtime_id is not None and (
        not isinstance(runtime_id, str) or not _ID.fullmatch(runtime_id)
    ):
        errors["runtime_id"] = ["The runtime's instance id, as in its heartbeats."]
    fields["runtime_id"] = runtime_id or ""
    agent = body.get("agent")
    if not isinstance(agent, str) or not _SLUG.fullmatch(agent):
        errors["agent"] = ["The agent's slug."]
    fields["agent"] = agent
    tool = body.get("tool")
    if not isinstance(tool, str) or not _TOOL.fullmatch(tool):
        errors["tool"] = ["A tool name: a letter, then up to 63 letters, digits, _ or -."]
    fields["tool"] = tool
    arguments = body.get("arguments")
    if not isinstance(arguments, dict):
        errors["arguments"] = ["The call's arguments, a JSON object."]
    elif problems := json_problems(arguments, max_depth=MAX_ARGUMENTS_DEPTH):
        # Bounded before anything walks them (hash, redaction, the contract's rules): deep
        # nesting would exhaust the stack, NUL and non-finite numbers cannot be stored.
        errors["arguments"] = [
            f"{path}: {message}" if path else message
            for path, messages in problems.items()
            for message in messages
        ]
    else:
        try:
            size = len(canonical_json(arguments))
        except (CanonicalError, ValueError, TypeError, RecursionError):
            errors["arguments"] = ["Not representable as canonical JSON (RFC 8785)."]
        else:
            if size > MAX_ARGUMENTS_BYTES:
                errors["arguments"] = [f"At most {MAX_ARGUMENTS_BYTES:,} bytes as canonical JSON."]
    fields["arguments"] = arguments
    digest = body.get("arguments_sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        errors["arguments_sha256"] = [
            "64 lowercase hex digits: sha256 of the RFC 8785 canonical JSON of the arguments."
        ]
    fields["arguments_sha256"] = digest
    risk = body.get("risk")
    if risk is not None and risk not in RISKS:
        errors["risk"] = [f"One of {', '.join(RISKS)}."]
    fields["risk"] = risk
    fields["reason"] = _text(body, "reason", MAX_REASON, errors)
    fields["rule"] = _text(body, "rule", 200, errors)
    fields["requested_by"] = _text(body, "requested_by", 254, errors).strip()
    fields["excerpt"] = _excerpt(body.get("excerpt"), errors)
    version = body.get("bundle_version")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**31
    ):
        errors["bundle_version"] = ["The bundle version number the runtime serves (1, 2, ...)."]
    fields["bundle_version"] = version
    if errors:
        raise ValidationError(errors)
    return fields


def _bundle_of(
    agent: Agent, number: int | None, deployment: Deployment | None
) -> BundleVersion | None:
    """The version the runtime names, else the stable deployment's."""
    if number is not None:
        version = BundleVersion.objects.filter(agent=agent, number=number).first()
        if version is None:
            raise ValidationError({"bundle_version": [f"{agent.slug} has no version {number}."]})
        return version
    return deployment.version if deployment is not None else None


def _stable_floor(
    deployment: Deployment | None,
    environment: Environment,
    version: BundleVersion | None,
    tool: str,
) -> tuple[str, str] | None:
    """The stable deployment's rating of ``tool`` when the runtime named another version (a
    candidate, or a stale one): that rating is a floor. None when the stable version is the
    one named, or does not declare the tool (a candidate's new tool)."""
    if deployment is None or version is None or deployment.version_id == version.pk:
        return None
    risk = declared_risk(deployment.version.content, tool)
    if risk is None:
        return None
    return risk, f"v{deployment.version.number} (stable in {environment.slug})"


def _served_sensitive(
    deployment: Deployment | None, agent: Agent, environment: Environment, tool: str
) -> frozenset[str]:
    """What the versions the environment serves (stable, a rollout's candidate) mark sensitive
    for ``tool``: a runtime redacts for any version it may serve."""
    paths: frozenset[str] = frozenset()
    if deployment is not None:
        paths |= sensitive_paths(deployment.version.content, tool)
    rollout = rollout_active(agent=agent, environment=environment)
    if rollout is not None and rollout.candidate is not None:
        paths |= sensitive_paths(rollout.candidate.content, tool)
    return paths


@transaction.atomic
def approval_open(
    *,
    tenant_id: int,
    environment_id: int,
    token_id: int | None,
    token_agent_id: int | None,
    token_label: str,
    body: Mapping[str, Any],
    now: datetime | None = None,
) -> Opened:
    """Open an approval request for a runtime (``POST /api/runtime/v1/approvals``), or return
    the one its idempotency key already opened. The platform assesses the call from the
    contract (``contract.assess``), routes it to its queue, and refuses a session already
    holding the queue's limit of open requests. Raises ``ValidationError``, ``UnknownAgent``,
    ``IdempotencyConflict``, ``SessionLimit``."""
    fields = open_validate(body)
    now = now or timezone.now()
    environment = Environment.objects.select_related("tenant").get(pk=environment_id)
    # The agent first: a repeat is answered only within the token's scope.
    agents = Agent.objects.filter(
        tenant_id=tenant_id, slug=fields["agent"], archived_at__isnull=True
    )
    if token_agent_id is not None:
        agents = agents.filter(pk=token_agent_id)
    agent = agents.first()
    if agent is None:
        raise UnknownAgent(fields["agent"])
    existing = _existing(environment_id, agent, fields)
    if existing is not None:
        return Opened(existing, False)
    deployment = deployment_current(agent=agent, environment=environment)  # read once
    version = _bundle_of(agent, fields["bundle_version"], deployment)
    assessment = assess(
        bundle=version.content if version is not None else None,
        version_label=f"v{version.number}" if version is not None else "",
        tool=fields["tool"],
        arguments=fields["arguments"],
        claimed_risk=fields["risk"],
        floor=_stable_floor(deployment, environment, version, fields["tool"]),
        also_sensitive=_served_sensitive(deployment, agent, environment, fields["tool"]),
    )
    if assessment.stray_markers:
        raise ValidationError(
            {
                "arguments": [
                    f'"{REDACTED}" stands only for the arguments the tool contract marks '
                    f"sensitive; found at {', '.join(assessment.stray_markers[:5])}."
                ]
            }
        )
    if assessment.complete:
        # Nothing was redacted: the approver sees exactly what the hash pins, so they must agree.
        actual = hashlib.sha256(canonical_json(fields["arguments"])).hexdigest()
        if actual != fields["arguments_sha256"]:
            raise ValidationError(
                {
                    "arguments_sha256": [
                        "Does not match the arguments: sha256 of their RFC 8785 canonical JSON "
                        f"is {actual}."
                    ]
                }
            )
    queue = queue_route(
        tenant=environment.tenant, agent_slug=agent.slug, tool=fields["tool"], risk=assessment.risk
    )
    queue = lock_row(ApprovalQueue, queue.pk)  # one open at a time per queue: the limit holds
    # A retry of this key that held the lock first has committed its request: that one is the
    # answer (not a 429 for the session it filled).
    existing = _existing(environment_id, agent, fields)
    if existing is not None:
        return Opened(existing, False)
    open_in_session = ApprovalRequest.objects.filter(
        environment_id=environment_id,
        session_id=fields["session_id"],
        queue=queue,
        status=Status.PENDING,
    ).count()
    if open_in_session >= queue.max_open_per_session:
        raise SessionLimit(
            f"Session {fields['session_id']} already has {open_in_session} open approval "
            f"requests in the queue {queue.name} (its limit is {queue.max_open_per_session}): "
            "wait for a decision or cancel one.",
            retry_after_s=30,
        )
    request = ApprovalRequest(
        tenant_id=tenant_id,
        environment_id=environment_id,
        agent=agent,
        queue=queue,
        token_id=token_id,
        runtime_id=fields["runtime_id"],
        idempotency_key=fields["idempotency_key"],
        tool=fields["tool"],
        arguments=assessment.arguments,
        arguments_sha256=fields["arguments_sha256"],
        redacted=assessment.redacted,
        risk=assessment.risk,
        risk_summary=assessment.summary,
        reason=fields["reason"],
        excerpt=fields["excerpt"],
        bundle_version=version,
        session_id=fields["session_id"],
        request_id=fields["request_id"],
        rule=fields["rule"],
        requested_by=fields["requested_by"],
        approvals_required=2 if assessment.risk == "critical" else 1,
        created_at=now,
        expires_at=now + timedelta(seconds=queue.timeout_s),
        escalate_at=(
            now + timedelta(seconds=queue.escalate_after_s)
            if queue.escalate_to_id and queue.escalate_after_s
            else None
        ),
    )
    try:
        with transaction.atomic():
            request.save()
    except IntegrityError:  # the same key opened meanwhile by a retry
        existing = _existing(environment_id, agent, fields)
        if existing is None:
            raise
        return Opened(existing, False)
    audit_record(
        actor=runtime_actor(token_label),
        action="approval.requested",
        target=request,
        tenant=environment.tenant,
        reason=fields["reason"][:500],
        after={
            "tool": request.tool,
            "risk": request.risk,
            "queue": queue.name,
            "session_id": request.session_id,
            "arguments_sha256": request.arguments_sha256,
        },
    )
    announce(request)
    return Opened(request, True)


def _existing(
    environment_id: int, agent: Agent, fields: Mapping[str, Any]
) -> ApprovalRequest | None:
    """The request this idempotency key already opened for the same call, None when it
    opened none. Raises ``IdempotencyConflict`` when it opened another call: of another agent
    (named in no detail: the token may be scoped to one agent), another tool or arguments."""
    existing = (
        ApprovalRequest.objects.select_related("queue")
        .filter(environment_id=environment_id, idempotency_key=fields["idempotency_key"])
        .first()
    )
    if existing is None:
        return None
    if existing.agent_id != agent.pk:
        raise IdempotencyConflict(
            f"The idempotency key {fields['idempotency_key']} was already used in this "
            "environment for another agent's call: use a new key for a new call."
        )
    if existing.tool != fields["tool"] or existing.arguments_sha256 != fields["arguments_sha256"]:
        raise IdempotencyConflict(
            f"The idempotency key {fields['idempotency_key']} already opened request "
            f"#{existing.pk} for {existing.tool} with other arguments: use a new key for a new "
            "call."
        )
    return existing


# ------------------------------------------------------------------ runtime: read, cancel


def approval_for_runtime(
    *, tenant_id: int, environment_id: int, token_agent_id: int | None, approval_id: int
) -> ApprovalRequest | None:
    """The request ``approval_id`` if it is in the token's scope (tenant, environment, the
    token's agent), else None. Reads only (it runs on the fast path's shared read thread):
    a pending request past its expiry is shown expired by ``runtime_document``; the sweep
    records it."""
    requests = ApprovalRequest.objects.select_related("queue").filter(
        pk=approval_id, tenant_id=tenant_id, environment_id=environment_id
    )
    if token_agent_id is not None:
        requests = requests.filter(agent_id=token_agent_id)
    return requests.first()


EXPIRED_COMMENT = "No decision before the queue's timeout."


def runtime_document(
    request: ApprovalRequest, *, now: datetime | None = None
) -> tuple[dict[str, Any], bool]:
    """The ``{approval}`` document a runtime reads, and whether it is final. A pending request
    past its ``expires_at`` is expired at that moment, whether or not the sweep has recorded it
    yet: the runtime denies the call exactly then (the recorded expiry says the same)."""
    document = approval_json(request)
    if request.status == Status.PENDING and request.expires_at <= (now or timezone.now()):
        document.update(
            status=Status.EXPIRED.value,
            outcome="deny",
            decided_at=document["expires_at"],
            decided_by=[],
            comment=EXPIRED_COMMENT,
        )
    return document, document["status"] != Status.PENDING


@transaction.atomic
def approval_cancel(
    *,
    tenant_id: int,
    environment_id: int,
    token_agent_id: int | None,
    token_label: str,
    approval_id: int,
    reason: str = "",
) -> ApprovalRequest | None:
    """Cancel a pending request for the runtime that holds it (its agent gave up, the session
    ended). A final request is returned unchanged; None when it is not in the token's scope.
    Raises ``ValidationError`` for a bad reason."""
    if not isinstance(reason, str) or len(reason) > 500:
        raise ValidationError({"reason": ["Text of at most 500 characters."]})
    if control_character_problem(reason):
        raise ValidationError({"reason": [str(control_character_problem(reason))]})
    found = approval_for_runtime(
        tenant_id=tenant_id,
        environment_id=environment_id,
        token_agent_id=token_agent_id,
        approval_id=approval_id,
    )
    if found is None:
        return None
    request = _lock(found.pk)
    if request.status == Status.PENDING and request.expires_at <= timezone.now():
        _expire_locked(request)  # it expired before the runtime gave up: that is what it is
    if request.status != Status.PENDING:
        return request
    _transition(request, Status.CANCELLED, comment=reason)
    audit_record(
        actor=runtime_actor(token_label),
        action="approval.cancelled",
        target=request,
        tenant=request.tenant,
        reason=reason,
        before={"status": Status.PENDING.value},
        after={"status": request.status},
    )
    announce(request)
    return request


def _lock(request_id: int) -> ApprovalRequest:
    """The request under its row lock, with its queue (and the queue's tenant and escalation
    target) read once the lock is held. Not joined into the locking query: PostgreSQL
    re-checks a waiting ``FOR UPDATE``'s joins against the rows it first read, so a request
    moved to another queue while this waited (an escalation committing) would not be found.
    Raises ``ApprovalRequest.DoesNotExist``."""
    locked = lock_row(ApprovalRequest, request_id, related=("tenant", "agent"))
    locked.queue = ApprovalQueue.objects.select_related("tenant", "escalate_to").get(
        pk=locked.queue_id
    )
    return locked


def _transition(
    request: ApprovalRequest,
    status: str,
    *,
    comment: str = "",
    deciders: Iterable[str] = (),
    now: datetime | None = None,
) -> None:
    """Move a locked request to ``status`` if ``models.TRANSITIONS`` allows it (else
    ``ValueError``: a programming error) and save it."""
    if status not in TRANSITIONS[request.status]:
        raise ValueError(f"approval #{request.pk}: {request.status} -> {status} is not allowed")
    request.status = status
    request.decided_at = now or timezone.now()
    request.comment = comment
    request.decided_by_label = ",".join(deciders)
    request.escalate_at = None
    request.version += 1
    request.save()


# ------------------------------------------------------------------ approvers: decide


def _decided_message(request: ApprovalRequest) -> str:
    when = timezone.localtime(request.decided_at).strftime("%H:%M:%S") if request.decided_at else ""
    who = request.decided_by_label.replace(",", " and ") or "the system"
    if request.status == Status.EXPIRED:
        return f"Request #{request.pk} expired at {when} before anyone decided (denied)."
    if request.status == Status.CANCELLED:
        return f"Request #{request.pk} was cancelled by its runtime at {when}."
    return f"Request #{request.pk} was already {request.status} by {who} at {when}."


def _is_requester(user: Any, request: ApprovalRequest) -> bool:
    asked = request.requested_by.strip().casefold()
    if not asked:
        return False
    names = {str(user.get_username()).casefold(), str(getattr(user, "email", "") or "").casefold()}
    return asked in names - {""}


def _decision_checked(choice: Any, comment: Any) -> str:
    """The comment of a valid decision, stripped; raises ``ValidationError`` by field."""
    if choice not in ApprovalVote.Choice.values:
        raise ValidationError({"decision": ["approve or reject."]})
    if not isinstance(comment, str) or len(comment) > 2000:
        raise ValidationError({"comment": ["Text of at most 2,000 characters."]})
    if control_character_problem(comment):
        raise ValidationError({"comment": [str(control_character_problem(comment))]})
    comment = comment.strip()
    if choice == ApprovalVote.Choice.REJECT and not comment:
        raise ValidationError({"comment": ["Say why: the agent and its user read it."]})
    return comment


@transaction.atomic
def approval_decide(
    *,
    actor: Actor,
    request: ApprovalRequest,
    choice: str,
    comment: str = "",
    bulk: bool = False,
) -> ApprovalRequest:
    """Record ``actor``'s ``choice`` ("approve" | "reject") on a pending request. One reject
    decides; approvals decide once ``approvals_required`` distinct approvers approved (two for
    critical). The requester (``requested_by``) cannot decide their own request. Two
    approvers deciding at once: the row lock makes one win, the other gets
    ``AlreadyDecided`` naming who decided. A request past its expiry expires instead.
    ``bulk``: refused for anything but low-risk single-approver requests. An approval of a
    request whose tenant, agent or environment is archived is refused (``ValidationError``
    on that field); a reject is not. Raises ``PermissionDenied``, ``ValidationError``,
    ``AlreadyDecided``."""
    comment = _decision_checked(choice, comment)
    user, label = actor_identity(actor)
    if user is None:
        raise PermissionDenied("Only a person decides an approval request.")
    locked = _lock(request.pk)
    if not may_decide(user, locked.queue):
        raise PermissionDenied(f"You are not an approver of the queue {locked.queue.name}.")
    if locked.status == Status.PENDING and locked.expires_at <= timezone.now():
        # Due but not swept yet: it is expired all the same (the sweep records it; anything
        # written here would be rolled back with this refusal).
        when = timezone.localtime(locked.expires_at).strftime("%H:%M:%S")
        raise AlreadyDecided(
            f"Request #{locked.pk} expired at {when} before anyone decided (denied).", locked
        )
    if locked.status != Status.PENDING:
        raise AlreadyDecided(_decided_message(locked), locked)
    if choice == ApprovalVote.Choice.APPROVE:
        # What is archived is frozen: nothing in it is let through. A reject, which takes the
        # action away, still clears the request from the queue.
        refuse_archived(tenant=locked.tenant, agent=locked.agent, environment=locked.environment)
    if bulk and (locked.risk not in BULK_RISKS or locked.approvals_required > 1):
        raise ValidationError(
            {"decision": [f"#{locked.pk} is {locked.risk_label} risk: decide it on its own."]}
        )
    if _is_requester(user, locked):
        raise PermissionDenied("You asked for this call: someone else must decide it.")
    if ApprovalVote.objects.filter(request=locked, user=user).exists():
        raise AlreadyDecided(
            f"You already approved #{locked.pk}; it needs another approver "
            f"({locked.approvals} of {locked.approvals_required}).",
            locked,
        )
    now = timezone.now()
    ApprovalVote.objects.create(
        request=locked, user=user, user_label=label, choice=choice, comment=comment, created_at=now
    )
    deciders = list(
        ApprovalVote.objects.filter(request=locked, choice=ApprovalVote.Choice.APPROVE)
        .order_by("created_at", "id")
        .values_list("user_label", flat=True)
    )
    if choice == ApprovalVote.Choice.REJECT:
        _transition(locked, Status.REJECTED, comment=comment, deciders=[label], now=now)
        action = "approval.rejected"
    else:
        locked.approvals = len(deciders)
        if locked.approvals >= locked.approvals_required:
            _transition(locked, Status.APPROVED, comment=comment, deciders=deciders, now=now)
            action = "approval.approved"
        else:
            locked.version += 1
            locked.save(update_fields=["approvals", "version"])
            action = "approval.vote"
    audit_record(
        actor=actor,
        action=action,
        target=locked,
        tenant=locked.tenant,
        reason=comment,
        before={"status": Status.PENDING.value},
        after={
            "status": locked.status,
            "approvals": locked.approvals,
            "approvals_required": locked.approvals_required,
            "arguments_sha256": locked.arguments_sha256,
            **({"bulk": True} if bulk else {}),
        },
    )
    announce(locked)
    return locked


@dataclass(frozen=True)
class BulkResult:
    """Per request of a bulk decision: decided, or why not (the others still are)."""

    decided: list[int]
    refused: dict[int, str]


def approval_decide_bulk(
    *, actor: Actor, requests: Iterable[ApprovalRequest], choice: str, comment: str = ""
) -> BulkResult:
    """Decide several low-risk requests at once, each in its own transaction: one refused
    (not low risk, decided meanwhile, not yours) leaves the others decided. A bad decision or
    comment (a reject without one) refuses them all at once: ``ValidationError`` by field."""
    _decision_checked(choice, comment)
    decided: list[int] = []
    refused: dict[int, str] = {}
    for request in requests:
        try:
            approval_decide(actor=actor, request=request, choice=choice, comment=comment, bulk=True)
        except ValidationError as exc:
            refused[request.pk] = "; ".join(
                message for messages in exc.message_dict.values() for message in messages
            )
        except (AlreadyDecided, PermissionDenied) as exc:
            refused[request.pk] = str(exc)
        else:
            decided.append(request.pk)
    return BulkResult(decided, refused)


# ------------------------------------------------------------------ beat: expire, escalate


def _expire_locked(request: ApprovalRequest) -> None:
    # decided when it expired (what a runtime reading it then was told), not when swept
    _transition(request, Status.EXPIRED, comment=EXPIRED_COMMENT, now=request.expires_at)
    audit_record(
        actor=SYSTEM,
        action="approval.expired",
        target=request,
        tenant=request.tenant,
        reason=f"not decided within {request.queue.timeout_s:,} s (queue {request.queue.name})",
        before={"status": Status.PENDING.value},
        after={"status": request.status, "outcome": "deny"},
    )
    alert_raise(
        tenant=request.tenant,
        kind="approval.expired",
        severity="warning",
        title=f"Approval request #{request.pk} ({request.tool}) expired undecided",
        detail=(
            f"{request.agent.slug if request.agent_id else ''} asked for {request.tool} "
            f"({request.risk_label} risk) in queue {request.queue.name}; nobody decided within "
            "its timeout, so the runtime denied it."
        ),
        link=f"/approvals/?request={request.pk}",
        subject_type="approvals.approvalrequest",
        subject_id=str(request.pk),
    )
    announce(request)


@transaction.atomic
def approval_expire(*, request_id: int) -> bool:
    """Expire one pending request past its ``expires_at`` (deny, the safe default); False
    when it was decided meanwhile or is not due."""
    request = _lock(request_id)
    if request.status != Status.PENDING or request.expires_at > timezone.now():
        return False
    _expire_locked(request)
    return True


@transaction.atomic
def approval_escalate(*, request_id: int) -> bool:
    """Move one pending request due for escalation to its queue's ``escalate_to`` queue;
    False when not due (decided, moved, or the queue stopped escalating)."""
    request = _lock(request_id)
    now = timezone.now()
    target = request.queue.escalate_to
    if (
        request.status != Status.PENDING
        or request.escalate_at is None
        or request.escalate_at > now
        or target is None
    ):
        if request.status == Status.PENDING and request.escalate_at and target is None:
            request.escalate_at = None
            request.save(update_fields=["escalate_at"])
        return False
    source = request.queue
    request.escalated_from = source
    request.escalated_at = now
    request.queue = target
    request.escalate_at = (
        now + timedelta(seconds=target.escalate_after_s)
        if target.escalate_to_id and target.escalate_after_s and target.escalate_to_id != source.pk
        else None
    )
    request.version += 1
    request.save()
    audit_record(
        actor=SYSTEM,
        action="approval.escalated",
        target=request,
        tenant=request.tenant,
        reason=f"not decided within {source.escalate_after_s or 0:,} s in {source.name}",
        before={"queue": source.name},
        after={"queue": target.name},
    )
    announce(request)
    return True


def approvals_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """The beat's pass (``approvals.sweep``): expire what is past its timeout (deny), then
    escalate what waited past its queue's escalation time. Each request in its own
    transaction; at most ``limit`` of each per pass. Returns counts."""
    now = now or timezone.now()
    due = list(
        ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    expired = sum(1 for pk in due if _isolated(approval_expire, pk))
    waiting = list(
        ApprovalRequest.objects.filter(status=Status.PENDING, escalate_at__lte=now)
        .order_by("escalate_at")
        .values_list("pk", flat=True)[:limit]
    )
    escalated = sum(1 for pk in waiting if _isolated(approval_escalate, pk))
    return {"expired": expired, "escalated": escalated}


def _isolated(step: Any, request_id: int) -> bool:
    """One request's step of the sweep; a failure is logged and costs only that request (the
    next pass tries it again), never the rest of the pass."""
    try:
        return bool(step(request_id=request_id))
    except Exception:
        log.exception("approvals.sweep_failed", request_id=request_id, step=step.__name__)
        return False


__all__ = [
    "AlreadyDecided",
    "BulkResult",
    "IdempotencyConflict",
    "Opened",
    "SessionLimit",
    "UnknownAgent",
    "approval_cancel",
    "approval_decide",
    "approval_decide_bulk",
    "approval_escalate",
    "approval_expire",
    "approval_for_runtime",
    "approval_json",
    "approval_open",
    "approvals_sweep",
    "open_validate",
    "runtime_document",
]
