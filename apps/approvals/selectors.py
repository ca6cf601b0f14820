"""Reads of approvals for the inbox, the API and the queue-health charts.

Who sees what: every role reads the queues of its tenants; an **Approver** sees only the
requests of the queues it decides (an approver of queue X cannot see queue Y), the other roles
every request of their tenants. Deciding needs ``services.may_decide``."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, Count, IntegerField, Min, Q, QuerySet, Value, When
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from apps.core.authz import AnyUser, restrict, user_may
from apps.core.diffs import json_changes
from apps.core.roles import Role, user_is_admin, user_role

from .models import FINAL, RISKS, ApprovalQueue, ApprovalRequest, ApprovalVote, Status
from .services import DECIDE, may_decide

# critical first: the inbox's order
RISK_ORDER = Case(
    *(When(risk=risk, then=Value(rank)) for rank, risk in enumerate(RISKS)),
    default=Value(len(RISKS)),
    output_field=IntegerField(),
)


def queues_visible(user: AnyUser, tenant_id: int | None = None) -> QuerySet[ApprovalQueue]:
    """The queues of the user's tenants (Approvers: only theirs), by tenant and routing order."""
    queues = restrict(ApprovalQueue.objects.select_related("tenant", "escalate_to"), user, "view")
    if tenant_id is not None:
        queues = queues.filter(tenant_id=tenant_id)
    if user_role(user) == Role.APPROVER:
        queues = queues.filter(pk__in=queues_decidable(user).values("pk"))
    return queues.order_by("tenant__name", "is_default", "position", "name")


def queues_decidable(user: AnyUser) -> QuerySet[ApprovalQueue]:
    """The queues whose requests ``user`` may decide (role, tenant, approver group)."""
    queues = restrict(ApprovalQueue.objects.all(), user, "view")
    if not user_may(user, DECIDE):
        return queues.none()
    if user_is_admin(user):
        return queues
    granted = get_objects_for_user(
        user, DECIDE, klass=ApprovalQueue, with_superuser=False, accept_global_perms=False
    )
    return queues.filter(pk__in=granted.values("pk"))


def requests_visible(user: AnyUser) -> QuerySet[ApprovalRequest]:
    """The requests ``user`` may read (see the module docstring)."""
    requests = restrict(
        ApprovalRequest.objects.select_related("queue", "agent", "environment", "tenant"),
        user,
        "view",
    )
    if user_role(user) == Role.APPROVER:
        requests = requests.filter(queue__in=queues_decidable(user).values("pk"))
    return requests


def inbox_tools(user: AnyUser, tenant_id: int | None = None) -> list[str]:
    """The tool names of the requests ``user`` may read (of one tenant when ``tenant_id``),
    alphabetically, at most 200: the choices of the inbox's tool filter."""
    requests = requests_visible(user)
    if tenant_id is not None:
        requests = requests.filter(tenant_id=tenant_id)
    return list(requests.order_by("tool").values_list("tool", flat=True).distinct()[:200])


@dataclass(frozen=True)
class InboxFilters:
    """The inbox's filters: queue id, agent slug, environment slug, tool, risk, minimum age
    in seconds, status (default: waiting; ``DECIDED``: any final state; "": all), tenant id
    (None: every tenant of the user)."""

    queue: int | None = None
    agent: str = ""
    environment: str = ""  # slug (the overview links a row's waiting requests here)
    tool: str = ""
    risk: str = ""
    min_age_s: int | None = None
    status: str = Status.PENDING
    tenant_id: int | None = None


DECIDED = "decided"  # the inbox's status filter for every final state


def inbox(user: AnyUser, filters: InboxFilters, *, now: datetime | None = None) -> QuerySet[Any]:
    """The requests of the inbox: waiting ones by risk (critical first), then age (oldest
    first); decided ones newest first."""
    now = now or timezone.now()
    requests = requests_visible(user)
    if filters.tenant_id is not None:
        requests = requests.filter(tenant_id=filters.tenant_id)
    if filters.status == DECIDED:
        requests = requests.filter(status__in=FINAL)
    elif filters.status:
        requests = requests.filter(status=filters.status)
    if filters.queue is not None:
        requests = requests.filter(queue_id=filters.queue)
    if filters.agent:
        requests = requests.filter(agent__slug=filters.agent)
    if filters.environment:
        requests = requests.filter(environment__slug=filters.environment)
    if filters.tool:
        requests = requests.filter(tool=filters.tool)
    if filters.risk:
        requests = requests.filter(risk=filters.risk)
    if filters.min_age_s:
        requests = requests.filter(created_at__lte=now - timedelta(seconds=filters.min_age_s))
    if filters.status == Status.PENDING:
        return requests.annotate(risk_rank=RISK_ORDER).order_by("-risk_rank", "created_at", "id")
    return requests.order_by("-decided_at", "-id")


@dataclass(frozen=True)
class QueueCount:
    queue: ApprovalQueue
    waiting: int
    over_sla: int
    may_decide: bool


def queue_counts(
    user: AnyUser, *, tenant_id: int | None = None, now: datetime | None = None
) -> list[QueueCount]:
    """Per visible queue (of one tenant when ``tenant_id``): requests waiting, and of those
    how many are past the queue's SLA."""
    now = now or timezone.now()
    queues = list(queues_visible(user, tenant_id))
    sla_by_queue = {queue.pk: queue.sla_s for queue in queues}
    visible = requests_visible(user).filter(status=Status.PENDING)
    if tenant_id is not None:
        visible = visible.filter(tenant_id=tenant_id)
    waiting = dict(visible.values("queue_id").annotate(n=Count("id")).values_list("queue_id", "n"))
    over: dict[int, int] = defaultdict(int)
    for queue_id, created in visible.values_list("queue_id", "created_at"):
        sla = sla_by_queue.get(queue_id)
        if sla is not None and (now - created).total_seconds() > sla:
            over[queue_id] += 1
    decidable = set(queues_decidable(user).values_list("pk", flat=True))
    return [
        QueueCount(q, waiting.get(q.pk, 0), over.get(q.pk, 0), q.pk in decidable) for q in queues
    ]


def request_get(user: AnyUser, pk: int) -> ApprovalRequest | None:
    """One request the user may read, or None."""
    return requests_visible(user).filter(pk=pk).first()


@dataclass
class Detail:
    """What the detail pane shows beside the request: its votes, the last approved call of
    the same tool by the same agent and the argument changes since it (``changes``: path ->
    (before, after), "" for absent), and recent decisions on the tool."""

    request: ApprovalRequest
    votes: list[ApprovalVote]
    previous: ApprovalRequest | None
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    recent: list[ApprovalRequest] = field(default_factory=list)
    may_decide: bool = False


def argument_changes(before: Any, after: Any) -> dict[str, tuple[Any, Any]]:
    """Field-level changes between two argument objects (``apps.core.diffs``, deepdiff):
    dotted path (``items.0.sku``) -> (before, after); an added field's before and a removed
    field's after are ``""``. Keys in order, list indexes numerically."""
    return {
        change.dotted: (
            "" if change.kind == "added" else change.before,
            "" if change.kind == "removed" else change.after,
        )
        for change in json_changes(before, after)
    }


def request_detail(user: AnyUser, request: ApprovalRequest) -> Detail:
    """The detail pane's data for a request ``user`` may read."""
    previous = (
        requests_visible(user)
        .filter(
            agent_id=request.agent_id,
            tool=request.tool,
            status=Status.APPROVED,
            decided_at__lt=request.decided_at or timezone.now(),
        )
        .exclude(pk=request.pk)
        .order_by("-decided_at")
        .first()
    )
    recent = list(
        requests_visible(user)
        .filter(tenant_id=request.tenant_id, tool=request.tool)
        .exclude(status=Status.PENDING)
        .exclude(pk=request.pk)
        .order_by("-decided_at")[:8]
    )
    return Detail(
        request=request,
        votes=list(request.votes.all()),
        previous=previous,
        changes=argument_changes(previous.arguments, request.arguments) if previous else {},
        recent=recent,
        may_decide=request.status == Status.PENDING and may_decide(user, request.queue),
    )


# ------------------------------------------------------------------ queue health


def _percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation (numpy's default), None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Health:
    """Queue health over a period: ``hours`` (bucket starts), per bucket ``opened``,
    ``expired``, ``escalated``, ``depth`` (waiting at the bucket's end); time to decision
    p50/p95 in seconds (decided by a person); per tool ``approval_rate`` (approved of
    decided, expiries counted as not approved), counts, and its own ``p50_s`` / ``p95_s``."""

    hours: list[datetime]
    opened: list[int]
    expired: list[int]
    escalated: list[int]
    depth: list[int]
    p50_s: float | None
    p95_s: float | None
    tools: list[dict[str, Any]]
    waiting: int


def queue_health(
    user: AnyUser,
    *,
    queue_ids: Iterable[int] | None = None,
    hours: int = 24,
    now: datetime | None = None,
) -> Health:
    """Queue health for the user's visible requests (optionally some queues) over the last
    ``hours`` hours, in hour buckets."""
    now = now or timezone.now()
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    requests = requests_visible(user)
    if queue_ids is not None:
        requests = requests.filter(queue_id__in=list(queue_ids))
    rows = list(
        requests.filter(
            Q(created_at__gte=start) | Q(status=Status.PENDING) | Q(decided_at__gte=start)
        ).values_list("created_at", "decided_at", "escalated_at", "status", "tool")
    )
    buckets = [start + timedelta(hours=index) for index in range(hours)]

    def bucket(moment: datetime | None) -> int | None:
        if moment is None or moment < start:
            return None
        index = int((moment - start).total_seconds() // 3600)
        return index if index < hours else None

    opened = [0] * hours
    expired = [0] * hours
    escalated = [0] * hours
    # Waiting at the end of bucket i (``start + (i + 1) h``): opened before it, decided at or
    # after it. Each request adds 1 from its first such bucket up to (not including) the one
    # it was decided in: counted as steps and summed once, so the page costs one pass over
    # the requests, not one per request and hour (168 hours of a busy queue took seconds).
    steps = [0] * (hours + 1)
    hour = timedelta(hours=1)
    durations: list[float] = []
    tool_durations: dict[str, list[float]] = defaultdict(list)
    per_tool: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for created, decided, escalated_at, status, tool in rows:
        if (index := bucket(created)) is not None:
            opened[index] += 1
        if status == Status.EXPIRED and (index := bucket(decided)) is not None:
            expired[index] += 1
        if (index := bucket(escalated_at)) is not None:
            escalated[index] += 1
        first = max(0, (created - start) // hour)
        stop = hours if decided is None else min(hours, (decided - start) // hour)
        if first < stop:
            steps[first] += 1
            steps[stop] -= 1
        if decided is not None and decided >= start:
            per_tool[tool][status] += 1
            if status in (Status.APPROVED, Status.REJECTED):
                durations.append((decided - created).total_seconds())
                tool_durations[tool].append((decided - created).total_seconds())
    depth = list(itertools.accumulate(steps[:hours]))
    tools = []
    for tool, counts in sorted(per_tool.items()):
        judged = counts[Status.APPROVED] + counts[Status.REJECTED] + counts[Status.EXPIRED]
        tools.append(
            {
                "tool": tool,
                "approved": counts[Status.APPROVED],
                "rejected": counts[Status.REJECTED],
                "expired": counts[Status.EXPIRED],
                "cancelled": counts[Status.CANCELLED],
                "approval_rate": counts[Status.APPROVED] / judged if judged else None,
                "p50_s": _percentile(tool_durations[tool], 0.5),
                "p95_s": _percentile(tool_durations[tool], 0.95),
            }
        )
    return Health(
        hours=buckets,
        opened=opened,
        expired=expired,
        escalated=escalated,
        depth=depth,
        p50_s=_percentile(durations, 0.5),
        p95_s=_percentile(durations, 0.95),
        tools=tools,
        waiting=sum(1 for row in rows if row[3] == Status.PENDING),
    )


@dataclass(frozen=True)
class PendingSummary:
    """Requests waiting for one agent in one environment: how many, and when the oldest was
    opened (its age is what the overview shows)."""

    count: int
    oldest_at: datetime


def pending_by_agent_environment(
    user: AnyUser, *, tenant_id: int
) -> dict[tuple[int, int], PendingSummary]:
    """(agent id, environment id) -> the requests waiting that ``user`` may read in the
    tenant (an Approver: of the queues it decides), in one aggregate query."""
    rows = (
        requests_visible(user)
        .filter(tenant_id=tenant_id, status=Status.PENDING)
        .order_by()
        .values("agent_id", "environment_id")
        .annotate(n=Count("id"), oldest=Min("created_at"))
    )
    return {
        (row["agent_id"], row["environment_id"]): PendingSummary(row["n"], row["oldest"])
        for row in rows
    }
