"""Demo deployments (idempotent): every demo agent's v1 is stable everywhere, and
support-bot's "friendlier" v2 is stable in development, ready to be promoted — or rolled back."""

from __future__ import annotations

from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.tenancy.models import Tenant

from .models import Deployment
from .services import deployment_create

ACTOR = SystemActor("system:seed_demo")


def seed(tenant: Tenant) -> list[str]:
    done = []
    plan = [
        ("support-bot", 1, ["development", "staging", "production"]),
        ("refund-agent", 1, ["development", "staging", "production"]),
        ("support-bot", 2, ["development"]),
    ]
    for agent_slug, number, environments in plan:
        version = (
            BundleVersion.objects.select_related("agent")
            .filter(agent__tenant=tenant, agent__slug=agent_slug, number=number)
            .first()
        )
        if version is None:
            continue
        for environment in tenant.environments.filter(
            slug__in=environments, archived_at__isnull=True
        ):
            if Deployment.objects.filter(
                agent=version.agent, environment=environment, version__number__gte=number
            ).exists():
                continue
            deployment_create(
                actor=ACTOR,
                agent=version.agent,
                environment=environment,
                version=version,
                reason="demo data",
            )
            done.append(f"deployed {agent_slug} v{number} to {environment.slug}")
    return done
