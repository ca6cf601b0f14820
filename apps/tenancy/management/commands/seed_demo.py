"""Demo data for a newcomer. Idempotent: running it again changes nothing that exists.

Later capabilities add their demo data here, after the tenant, agents and environments."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.audit.services import SystemActor
from apps.tenancy import services
from apps.tenancy.models import Agent, Tenant

ACTOR = SystemActor("system:seed_demo")
DEMO_AGENTS = [
    ("support-bot", "Support bot", "Answers customer questions; may look up orders and open tickets."),
    ("refund-agent", "Refund agent", "Issues refunds; high-risk tools need a human approval."),
]


class Command(BaseCommand):
    help = "Load the demo tenant `acme` with its agents and environments (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug="acme").first()
        if tenant is None:
            tenant = services.tenant_create(actor=ACTOR, slug="acme", name="Acme Corp",
                                            time_zone="Europe/Paris", reason="demo data")
            self.stdout.write("created tenant acme with development → staging → production")
        for slug, name, description in DEMO_AGENTS:
            if not Agent.objects.filter(tenant=tenant, slug=slug).exists():
                services.agent_create(actor=ACTOR, tenant=tenant, slug=slug, name=name,
                                      description=description, reason="demo data")
                self.stdout.write(f"created agent {slug}")
        self.stdout.write(self.style.SUCCESS("demo data ready: tenant acme"))
