from __future__ import annotations

from django.db.models import Max, QuerySet

from apps.tenancy.models import Agent, Environment

from .models import Deployment


def deployment_current(*, agent: Agent, environment: Environment) -> Deployment | None:
    return (
        Deployment.objects.select_related("version")
        .filter(agent=agent, environment=environment)
        .order_by("-id")
        .first()
    )


def deployment_history(
    *, agent: Agent, environment: Environment | None = None
) -> QuerySet[Deployment]:
    qs = Deployment.objects.select_related("version", "environment", "previous__version").filter(
        agent=agent
    )
    if environment is not None:
        qs = qs.filter(environment=environment)
    return qs.order_by("-id")


def stable_deployments(*, environment_id: int, agent_id: int | None = None) -> list[Deployment]:
    """The current deployment of each active agent in an environment, for the snapshot."""
    history = Deployment.objects.filter(environment_id=environment_id)
    if agent_id is not None:
        history = history.filter(agent_id=agent_id)
    newest_ids = history.order_by().values("agent_id").annotate(newest=Max("id")).values("newest")
    return list(
        Deployment.objects.filter(id__in=newest_ids, agent__archived_at__isnull=True)
        .select_related("agent", "version")
        .order_by("agent__slug")
    )
