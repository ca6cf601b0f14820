"""Demo tenant, environments and agents (called by ``./manage.py seed_demo``). Idempotent:
running it again changes nothing that exists."""

from __future__ import annotations

from apps.audit.services import SystemActor

from . import services
from .models import Agent, Tenant

ACTOR = SystemActor("system:seed_demo")
DEMO_AGENTS = [
    (
        "support-bot",
        "Support bot",
        "Answers customer questions; may look up orders and open tickets.",
    ),
    ("refund-agent", "Refund agent", "Issues refunds; high-risk tools need a human approval."),
]


def seed() -> tuple[Tenant, list[str]]:
    """The tenant ``acme`` with development → staging → production and the demo agents."""
    done: list[str] = []
    tenant = Tenant.objects.filter(slug="acme").first()
    if tenant is None:
        tenant = services.tenant_create(
            actor=ACTOR, slug="acme", name="Acme Corp", time_zone="Europe/Paris", reason="demo data"
        )
        done.append("created tenant acme with development → staging → production")
    for slug, name, description in DEMO_AGENTS:
        if not Agent.objects.filter(tenant=tenant, slug=slug).exists():
            services.agent_create(
                actor=ACTOR,
                tenant=tenant,
                slug=slug,
                name=name,
                description=description,
                reason="demo data",
            )
            done.append(f"created agent {slug}")
    return tenant, done
