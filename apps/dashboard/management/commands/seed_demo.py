"""Demo data for a newcomer. Idempotent: running it again changes nothing that exists.

It lives in the dashboard app because the dashboard may use every other app: the tenancy
seed comes first (tenant, environments, agents), then each capability adds its demo data to
that tenant. A new capability adds one line to ``SEEDERS``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from apps.approvals import demo as approvals_demo
from apps.budgets import demo as budgets_demo
from apps.bundles import demo as bundles_demo
from apps.flags import demo as flags_demo
from apps.rollouts import demo as rollouts_demo
from apps.tenancy import demo as tenancy_demo
from apps.tenancy.models import Tenant

SEEDERS: list[tuple[str, Callable[[Tenant], list[str]]]] = [
    ("bundles", bundles_demo.seed),
    ("rollouts", rollouts_demo.seed),
    ("flags", flags_demo.seed),
    ("budgets", budgets_demo.seed),
    ("approvals", approvals_demo.seed),
]


class Command(BaseCommand):
    help = (
        "Load the demo tenant `acme`: environments, agents and each capability's demo data "
        "(idempotent)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant, done = tenancy_demo.seed()
        for line in done:
            self.stdout.write(line)
        if tenant.is_archived:
            # frozen, commands included (apps.core.authz): an operator archived the demo,
            # which `make run` must still start beside
            self.stdout.write(
                f"demo tenant {tenant.slug} is archived: its data left as it is "
                "(restore it to load the demo again)"
            )
            return
        for name, seed in SEEDERS:
            try:
                for line in seed(tenant):
                    self.stdout.write(line)
            except ValidationError as exc:
                # a part of the demo an operator archived (an agent, an environment)
                self.stdout.write(f"demo {name}: left as it is ({'; '.join(exc.messages)})")
        self.stdout.write(self.style.SUCCESS(f"demo data ready: tenant {tenant.slug}"))
