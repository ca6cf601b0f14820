from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.tenancy.models import Agent, Environment

from .models import (
    RevisionLog,
    RuntimeInstance,
    WebhookDelivery,
    live_q,
    reports_no_agent_q,
    serving_q,
    stale_after,
)
from .status import RuntimeStatus, runtime_status


@dataclass(frozen=True)
class RuntimeRow:
    instance: RuntimeInstance
    status: RuntimeStatus

    @property
    def agents(self) -> list[Agent]:
        """The agents the runtime reported serving, by name; empty: it reported none (it
        counts for every agent of its environment, shown as "all")."""
        return sorted(self.instance.served_agents.all(), key=lambda a: a.name)


def _scoped(qs: QuerySet[RuntimeInstance], agent: Agent | None) -> QuerySet[RuntimeInstance]:
    """Every runtime, or only those that count for ``agent`` (:func:`serving_q`)."""
    return qs if agent is None else qs.filter(serving_q(agent.pk))


def runtime_rows(
    *, environment: Environment, agent: Agent | None = None, now: datetime | None = None
) -> list[RuntimeRow]:
    """The runtimes of ``environment`` with their status against its revision; with
    ``agent``, only those that count for it (they serve it, or reported no agent)."""
    now = now or timezone.now()
    instances = _scoped(
        RuntimeInstance.objects.filter(environment=environment)
        .select_related("agent")
        .prefetch_related("served_agents"),
        agent,
    )
    return [
        RuntimeRow(
            i,
            runtime_status(
                last_seen_at=i.last_seen_at,
                last_report=i.last_report,
                applied_revision=i.applied_revision,
                nack_revision=i.nack_revision,
                nack_error=i.nack_error,
                current_revision=environment.revision,
                now=now,
                stale_after=stale_after(),
            ),
        )
        for i in instances.order_by("name", "instance_id")
    ]


@dataclass(frozen=True)
class Convergence:
    """How the live runtimes of one environment stand against its revision: all of them, or
    (``agent`` set) only those that count for that agent. ``unreported``: the live runtimes
    among ``live`` that reported no agent (counted for every agent, shown as "all")."""

    environment: Environment
    revision: int
    live: int
    on_revision: int
    nack: int
    stale: int
    agent: Agent | None = None
    unreported: int = 0

    @property
    def percent(self) -> int:
        return 100 if self.live == 0 else int(100 * self.on_revision / self.live)

    @property
    def converged(self) -> bool:
        return self.live > 0 and self.on_revision == self.live


def convergence_for(
    *,
    environments: QuerySet[Environment] | list[Environment],
    agent: Agent | None = None,
    now: datetime | None = None,
) -> list[Convergence]:
    """One aggregate query for all the given environments, in their order. With ``agent``,
    only the runtimes that count for it: those that reported serving it and those that
    reported no agent (:func:`~apps.runtimes.models.serving_q`); a count shown beside one
    agent must be this one, never the environment's."""
    environments = list(environments)
    live = live_q(now)
    counts = {
        row["environment_id"]: row
        for row in _scoped(RuntimeInstance.objects.filter(environment__in=environments), agent)
        .values("environment_id")
        .annotate(
            live=Count("id", filter=live),
            stale=Count("id", filter=~live),
            on_revision=Count(
                "id", filter=live & Q(applied_revision__gte=F("environment__revision"))
            ),
            nack=Count(
                "id",
                filter=live & Q(last_report="nack", nack_revision__gte=F("environment__revision")),
            ),
            unreported=Count("id", filter=live & reports_no_agent_q()),
        )
    }
    empty = {"live": 0, "stale": 0, "on_revision": 0, "nack": 0, "unreported": 0}
    result = []
    for environment in environments:
        row = counts.get(environment.pk, empty)
        result.append(
            Convergence(
                environment,
                environment.revision,
                row["live"],
                row["on_revision"],
                row["nack"],
                row["stale"],
                agent,
                row["unreported"],
            )
        )
    return result


@dataclass(frozen=True)
class Propagation:
    """How far ``revision`` has reached the live runtimes of ``environment`` (those that count
    for ``agent`` when set). ``announced_at`` / ``fully_applied_at`` are the environment's."""

    environment: Environment
    revision: int
    acknowledged: int
    live: int
    announced_at: datetime | None
    fully_applied_at: datetime | None
    agent: Agent | None = None

    @property
    def took_s(self) -> float | None:
        if self.announced_at and self.fully_applied_at:
            return max(0.0, (self.fully_applied_at - self.announced_at).total_seconds())
        return None

    @property
    def complete(self) -> bool:
        return self.live > 0 and self.acknowledged >= self.live


def propagation_of(
    *,
    environment: Environment,
    revision: int,
    agent: Agent | None = None,
    now: datetime | None = None,
) -> Propagation:
    """How many live runtimes of the environment (that count for ``agent``, when given) have
    applied ``revision`` (or later)."""
    now = now or timezone.now()
    live = _scoped(RuntimeInstance.objects.filter(environment=environment), agent).filter(
        live_q(now)
    )
    log = RevisionLog.objects.filter(environment=environment, revision=revision).first()
    return Propagation(
        environment,
        revision,
        live.filter(applied_revision__gte=revision).count(),
        live.count(),
        log.announced_at if log else None,
        log.fully_applied_at if log else None,
        agent,
    )


def webhook_deliveries(*, instance: RuntimeInstance, limit: int = 20) -> QuerySet[WebhookDelivery]:
    return instance.deliveries.all()[:limit]


def runtime_push_url(*, environment_id: int, instance_id: str) -> str | None:
    """The push URL an instance registered last, or None for an instance not seen yet."""
    return (
        RuntimeInstance.objects.filter(environment_id=environment_id, instance_id=instance_id)
        .values_list("push_url", flat=True)
        .first()
    )


# --------------------------------------------------------------------------- NACK storms

# A NACK storm: at least this many runtimes of one environment refused the same revision
# within the window the overview looks at. One runtime's NACK is its own problem (a bad
# disk, an old build); several refusing one revision say the change itself is wrong.
NACK_STORM_RUNTIMES = 3
NACK_EVENTS_READ = 5000  # the newest NACK events read per look: bounded, whatever happened


@dataclass(frozen=True)
class NackStorm:
    """``runtimes`` runtimes of ``environment_id`` refused ``revision`` between ``first_at``
    and ``last_at``; ``error``: the newest refusal's message."""

    environment_id: int
    revision: int
    runtimes: int
    first_at: datetime
    last_at: datetime
    error: str


def nack_storms(
    *, tenant_id: int, since: datetime, min_runtimes: int = NACK_STORM_RUNTIMES
) -> list[NackStorm]:
    """NACK storms of the tenant since ``since``, newest first: read from the audit log's
    ``runtime.nacked`` events (one per runtime that newly refused a revision), grouped by
    environment and revision. Two queries (the events; their runtimes' environments)."""
    events = list(
        AuditEvent.objects.filter(
            tenant_id=tenant_id, action="runtime.nacked", occurred_at__gte=since
        )
        .order_by("-id")
        .values_list("target_id", "after", "occurred_at")[:NACK_EVENTS_READ]
    )
    ids = {int(t) for t, _, _ in events if t.isdigit()}
    where = dict(
        RuntimeInstance.objects.filter(pk__in=ids).values_list("pk", "environment_id")
        if ids
        else []
    )
    groups: dict[tuple[int, int], list[tuple[str, datetime, str]]] = {}
    for target_id, after, occurred_at in events:
        environment_id = where.get(int(target_id)) if target_id.isdigit() else None
        revision = (after or {}).get("revision")
        if environment_id is None or not isinstance(revision, int):
            continue
        error = str((after or {}).get("error") or "")
        groups.setdefault((environment_id, revision), []).append((target_id, occurred_at, error))
    storms = [
        NackStorm(
            environment_id=environment_id,
            revision=revision,
            runtimes=len({t for t, _, _ in rows}),
            first_at=min(at for _, at, _ in rows),
            last_at=max(at for _, at, _ in rows),
            error=rows[0][2],  # newest first
        )
        for (environment_id, revision), rows in groups.items()
        if len({t for t, _, _ in rows}) >= min_runtimes
    ]
    return sorted(storms, key=lambda s: s.last_at, reverse=True)
