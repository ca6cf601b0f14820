"""Reads of the bundles app. Everything a user reaches is scoped through the tenancy
selectors (another tenant's agent is a 404); ``bundle_version_get_by_id`` is for system
callers (the runtimes app) that have scoped by runtime token already."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import Count, Max, OuterRef, QuerySet, Subquery
from django.http import Http404

from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.selectors import AnyUser, agent_list_for_user, environment_list_for_user

from .gates import GateStatus, Requirement, gate_evaluate
from .models import BundleVersion, Evaluation, GateRequirement, PromotionGate

# Lists never need the (up to 1 MiB) content; pages that show one version load it.
_HEAVY = ("canonical", "source", "parent__canonical", "parent__source")


def bundle_version_list(*, agent: Agent) -> QuerySet[BundleVersion]:
    """Versions of an agent the caller has already scoped (newest first)."""
    return (
        BundleVersion.objects.filter(agent=agent)
        .select_related("agent", "parent")
        .defer(*_HEAVY)
        .order_by("-number")
    )


def bundle_version_get(*, agent: Agent, number: int) -> BundleVersion:
    try:
        return BundleVersion.objects.select_related("agent__tenant", "parent").get(
            agent=agent, number=number
        )
    except (BundleVersion.DoesNotExist, ValueError, TypeError):
        raise Http404(f"{agent.slug} has no version {number}.") from None


def bundle_version_latest(*, agent: Agent) -> BundleVersion | None:
    return (
        BundleVersion.objects.filter(agent=agent)
        .select_related("agent")
        .order_by("-number")
        .first()
    )


def bundle_version_get_by_id(*, version_id: int) -> BundleVersion:
    """Unscoped: for system callers only (the runtime snapshot builder)."""
    return BundleVersion.objects.select_related("agent__tenant").get(pk=version_id)


def agent_by_slug(*, slug: str, tenant_slug: str | None = None) -> Agent:
    """For the CLI, which acts as the operator who runs it: find one agent by slug."""
    agents = Agent.objects.select_related("tenant").filter(slug=slug)
    if tenant_slug:
        agents = agents.filter(tenant__slug=tenant_slug)
    found = list(agents[:2])
    if not found:
        where = f" in tenant {tenant_slug}" if tenant_slug else ""
        raise Agent.DoesNotExist(f"No agent {slug!r}{where}.")
    if len(found) > 1:
        raise Agent.MultipleObjectsReturned(
            f"Several tenants have an agent {slug!r}: name one with --tenant."
        )
    return found[0]


def agent_bundle_summaries(*, user: AnyUser, tenant: Tenant, q: str = "") -> QuerySet[Agent]:
    """Agents of a tenant with their version count and latest version, for the bundles index."""
    latest = BundleVersion.objects.filter(agent=OuterRef("pk")).order_by("-number")
    agents = agent_list_for_user(user=user, tenant=tenant)
    if q:
        agents = agents.filter(name__icontains=q) | agents.filter(slug__icontains=q)
    return agents.annotate(
        version_count=Count("bundle_versions"),
        latest_number=Max("bundle_versions__number"),
        latest_digest=Subquery(latest.values("digest")[:1]),
        latest_message=Subquery(latest.values("message")[:1]),
        latest_author=Subquery(latest.values("author_label")[:1]),
        latest_at=Subquery(latest.values("created_at")[:1]),
    ).order_by("name")


def evaluation_list(*, version: BundleVersion) -> QuerySet[Evaluation]:
    return Evaluation.objects.filter(version=version).order_by("-created_at", "-id")


# --------------------------------------------------------------------------- gates


def gate_requirements(*, environments: Iterable[Environment]) -> dict[int, list[Requirement]]:
    """environment id -> its requirements (environments without a gate are left out)."""
    found: dict[int, list[Requirement]] = defaultdict(list)
    rows = GateRequirement.objects.filter(gate__environment__in=list(environments)).values_list(
        "gate__environment_id", "suite", "min_pass_rate"
    )
    for environment_id, suite, rate in rows:
        found[environment_id].append(Requirement(suite, rate))
    return dict(found)


def gate_statuses(
    *, versions: Sequence[BundleVersion], environments: Sequence[Environment]
) -> dict[int, list[GateStatus]]:
    """version id -> the gate status of every environment, in promotion order. Three queries
    whatever the number of versions."""
    requirements = gate_requirements(environments=environments)
    evaluations: dict[int, list[Evaluation]] = defaultdict(list)
    for evaluation in Evaluation.objects.filter(version__in=[v.pk for v in versions]).only(
        "version_id", "suite", "passed", "failed", "created_at"
    ):
        evaluations[evaluation.version_id].append(evaluation)
    return {
        version.pk: [
            gate_evaluate(
                environment_id=environment.pk,
                environment_name=environment.name,
                requirements=requirements.get(environment.pk),
                evaluations=evaluations[version.pk],
            )
            for environment in environments
        ]
        for version in versions
    }


def environments_for_gates(*, user: AnyUser, tenant: Tenant) -> list[Environment]:
    return list(environment_list_for_user(user=user, tenant=tenant))


def promotion_gate_rows(*, user: AnyUser, tenant: Tenant | None = None) -> list[dict[str, Any]]:
    """Every active environment the user may see, with its gate requirements (maybe none)."""
    return promotion_gate_rows_of(environments=environment_list_for_user(user=user, tenant=tenant))


def promotion_gate_rows_of(*, environments: Iterable[Environment]) -> list[dict[str, Any]]:
    """``{"environment", "gate" (or None), "requirements"}`` of each of ``environments``, in
    their order; the caller scoped them (``environment_list_for_user``)."""
    environments = list(environments)
    requirements = gate_requirements(environments=environments)
    gates = {
        g.environment_id: g for g in PromotionGate.objects.filter(environment__in=environments)
    }
    return [
        {
            "environment": environment,
            "gate": gates.get(environment.pk),
            "requirements": sorted(requirements.get(environment.pk, []), key=lambda r: r.suite),
        }
        for environment in environments
    ]


def promotion_gate_row(*, environment: Environment) -> dict[str, Any]:
    gate = PromotionGate.objects.filter(environment=environment).first()
    requirements = gate_requirements(environments=[environment]).get(environment.pk, [])
    return {
        "environment": environment,
        "gate": gate,
        "requirements": sorted(requirements, key=lambda r: r.suite),
    }


def promotion_gate_check(*, version: BundleVersion, environment: Environment) -> GateStatus:
    """Is ``version`` allowed into ``environment`` by its promotion gate? (rollouts ask this)"""
    return gate_statuses(versions=[version], environments=[environment])[version.pk][0]
