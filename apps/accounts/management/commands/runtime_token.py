from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.tenancy.models import Agent, Environment, Tenant


class Command(BaseCommand):
    help = "Create a runtime token for automation. Prints only the token."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        create = sub.add_parser("create", help="create a token and print it")
        create.add_argument("--tenant", required=True, help="tenant slug")
        create.add_argument("--environment", required=True, help="environment slug")
        create.add_argument("--agent", help="agent slug, to limit the token to one agent")
        create.add_argument(
            "--name", default="", help="what the token is for (default: cli-<environment>)"
        )
        create.add_argument("--expires-in-days", type=int, help="expire after this many days")
        create.add_argument("--reason", default="created from the command line")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = Tenant.objects.get(slug=options["tenant"])
            environment = Environment.objects.get(tenant=tenant, slug=options["environment"])
            agent = (
                Agent.objects.get(tenant=tenant, slug=options["agent"])
                if options["agent"]
                else None
            )
        except (Tenant.DoesNotExist, Environment.DoesNotExist, Agent.DoesNotExist) as exc:
            raise CommandError(f"not found: {exc}") from exc
        days = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-in-days must be positive")
        try:
            _, raw = runtime_token_create(
                actor=SystemActor("cli:runtime_token"),
                tenant=tenant,
                environment=environment,
                agent=agent,
                name=options["name"] or f"cli-{environment.slug}",
                expires_at=timezone.now() + timedelta(days=days) if days else None,
                reason=options["reason"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(raw)
