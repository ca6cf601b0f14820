from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.rollouts.services import deployment_create
from apps.tenancy.models import Agent, Environment


class Command(BaseCommand):
    help = "Deploy a bundle version as the stable version of an agent in an environment, now."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # `--version N` is the bundle version here, not Django's own --version flag.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agent", required=True, help="agent slug")
        parser.add_argument("--environment", required=True, help="environment slug")
        parser.add_argument(
            "--version", required=True, type=int, help="bundle version number (N of vN)"
        )
        parser.add_argument("--reason", required=True)
        parser.add_argument(
            "--tenant", help="tenant slug, when the agent slug exists in several tenants"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        agents = Agent.objects.filter(slug=options["agent"], archived_at__isnull=True)
        if options["tenant"]:
            agents = agents.filter(tenant__slug=options["tenant"])
        if agents.count() != 1:
            problem = "not found" if not agents else "ambiguous, pass --tenant"
            raise CommandError(f"agent {options['agent']!r}: {problem}")
        agent = agents.select_related("tenant").get()
        try:
            environment = Environment.objects.get(tenant=agent.tenant, slug=options["environment"])
            version = BundleVersion.objects.get(agent=agent, number=options["version"])
        except (Environment.DoesNotExist, BundleVersion.DoesNotExist) as exc:
            raise CommandError(f"not found: {exc}") from exc
        try:
            deployment = deployment_create(
                actor=SystemActor("cli:deploy"),
                agent=agent,
                environment=environment,
                version=version,
                reason=options["reason"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(
            f"{agent.slug} in {environment.slug}: v{version.number} is stable "
            f"(revision {deployment.revision})"
        )
