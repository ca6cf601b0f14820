from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from apps.tenancy.models import Environment

from .models import RevisionLog, RuntimeInstance, WebhookDelivery, live_q, stale_after
from .status import RuntimeStatus, runtime_status


@dataclass(frozen=True)
class RuntimeRow:
    instance: RuntimeInstance
    status: RuntimeStatus


def runtime_rows(*, environment: Environment, now: datetime | None = None) -> list[RuntimeRow]:
    now = now or timezone.now()
    instances = RuntimeInstance.objects.filter(environment=environment).select_related("agent")
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
    environment: Environment
    revision: int
    live: int
    on_revision: int
    nack: int
    stale: int

    @property
    def percent(self) -> int:
        return 100 if self.live == 0 else int(100 * self.on_revision / self.live)

    @property
    def converged(self) -> bool:
        return self.live > 0 and self.on_revision == self.live


def convergence_for(
    *, environments: QuerySet[Environment] | list[Environment], now: datetime | None = None
) -> list[Convergence]:
    """One aggregate query for all the given environments."""
    environments = list(environments)
    live = live_q(now)
    counts = {
        row["environment_id"]: row
        for row in RuntimeInstance.objects.filter(environment__in=environments)
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
        )
    }
    empty = {"live": 0, "stale": 0, "on_revision": 0, "nack": 0}
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
            )
        )
    return result


@dataclass(frozen=True)
class Propagation:
    environment: Environment
    revision: int
    acknowledged: int
    live: int
    announced_at: datetime | None
    fully_applied_at: datetime | None

    @property
    def took_s(self) -> float | None:
        if self.announced_at and self.fully_applied_at:
            return max(0.0, (self.fully_applied_at - self.announced_at).total_seconds())
        return None

    @property
    def complete(self) -> bool:
        return self.live > 0 and self.acknowledged >= self.live


def propagation_of(
    *, environment: Environment, revision: int, now: datetime | None = None
) -> Propagation:
    """How many live runtimes of the environment have applied ``revision`` (or later)."""
    now = now or timezone.now()
    live = RuntimeInstance.objects.filter(environment=environment).live(now)
    log = RevisionLog.objects.filter(environment=environment, revision=revision).first()
    return Propagation(
        environment,
        revision,
        live.filter(applied_revision__gte=revision).count(),
        live.count(),
        log.announced_at if log else None,
        log.fully_applied_at if log else None,
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
