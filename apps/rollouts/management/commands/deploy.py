from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.core.refusals import GateNotMet
from apps.rollouts.services import deployment_create, deployment_rollback
from apps.tenancy.models import Agent, Environment


class Command(BaseCommand):
    help = (
        "Deploy a bundle version as the stable version of an agent in an environment, now; "
        "or, with --rollback, go back to the last known-good version (as the UI and API do)."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # `--version N` is the bundle version here, not Django's own --version flag.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agent", required=True, help="agent slug")
        parser.add_argument("--environment", required=True, help="environment slug")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--version", type=int, help="bundle version number (N of vN)")
        which.add_argument(
            "--rollback",
            action="store_true",
            help="back to the last known-good version before the current one; never to a "
            "version that was rolled back from (refused when none is left)",
        )
        parser.add_argument("--reason", required=True)
        parser.add_argument(
            "--override-gate",
            default="",
            metavar="REASON",
            help="deploy past a promotion gate that is not met, saying why (audited); a "
            "rollback is never gated",
        )
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
        except Environment.DoesNotExist as exc:
            raise CommandError(f"not found: {exc}") from exc
        if options["rollback"]:
            self._rollback(agent, environment, options["reason"])
            return
        try:
            version = BundleVersion.objects.get(agent=agent, number=options["version"])
        except BundleVersion.DoesNotExist as exc:
            raise CommandError(f"not found: {exc}") from exc
        try:
            deployment = deployment_create(
                actor=SystemActor("cli:deploy"),
                agent=agent,
                environment=environment,
                version=version,
                reason=options["reason"],
                override_reason=options["override_gate"],
            )
        except GateNotMet as exc:
            raise CommandError(
                f"{exc.summary.split(': ', 1)[0]}:\n"
                + "\n".join(f"  {line}" for line in exc.lines)
                + "\nPass --override-gate REASON to deploy anyway (audited)."
            ) from exc
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(
            f"{agent.slug} in {environment.slug}: v{version.number} is stable "
            f"(revision {deployment.revision})"
            + (" past its promotion gate (override audited)" if deployment.gate_override else "")
        )

    def _rollback(self, agent: Agent, environment: Environment, reason: str) -> None:
        # The same service as the UI and the API: one rule for where a rollback goes, so
        # an operator at a terminal never re-deploys by hand a version that was rolled back
        # from (which would record it as known-good, issue 8 kind 9).
        try:
            deployment = deployment_rollback(
                actor=SystemActor("cli:deploy"),
                agent=agent,
                environment=environment,
                reason=reason,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        left = deployment.previous.version.number if deployment.previous else None
        self.stdout.write(
            f"{agent.slug} in {environment.slug}: rolled back to v{deployment.version.number}"
            + (f" from v{left}" if left is not None else "")
            + f" (revision {deployment.revision})"
        )
