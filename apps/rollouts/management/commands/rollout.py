"""``./manage.py rollout start|status|advance|pause|resume|abort|rollback|complete``: staged
rollouts from a terminal, through the same services as the UI and the API (acting as a
``SystemActor``, with a required ``--reason`` for every change)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.rollouts.models import Rollout
from apps.rollouts.plans import STICKINESS
from apps.rollouts.selectors import deployment_current, rollout_active
from apps.rollouts.services import release_rollback, rollout_start, rollout_transition
from apps.tenancy.models import Agent, Environment

ACTOR = SystemActor("cli:rollout")
MOVES = ("advance", "pause", "resume", "abort", "complete", "shrink")


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(m)}" for field, m in exc.message_dict.items())
    return "; ".join(exc.messages)


class Command(BaseCommand):
    help = (
        "Staged rollouts of a bundle version: start one (gates first; --override-gate to pass "
        "a failing one, audited), show its status, advance, pause, resume, abort, complete, "
        "or roll back (the running rollout, else the stable version to the last known-good)."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # `--version N` is the bundle version here, not Django's own --version flag.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        def scoped(name: str, help_text: str, *, reason: bool = True) -> CommandParser:
            sub = actions.add_parser(name, help=help_text, conflict_handler="resolve")
            sub.add_argument("--agent", required=True, help="agent slug")
            sub.add_argument("--environment", required=True, help="environment slug")
            sub.add_argument(
                "--tenant", help="tenant slug, when the agent slug exists in several tenants"
            )
            if reason:
                sub.add_argument("--reason", required=True, help="why (kept in the audit log)")
            return sub

        start = scoped("start", "start a rollout of a bundle version")
        start.add_argument("--version", type=int, required=True, help="bundle version number")
        start.add_argument(
            "--override-gate",
            default="",
            metavar="REASON",
            help="start past a failing gate, saying why (audited)",
        )
        start.add_argument(
            "--stickiness", choices=STICKINESS, default="", help="default: the plan's"
        )
        start.add_argument(
            "--tenant-constraint",
            default="",
            metavar="T1,T2",
            help="only these tenants (tenantId IN …) may get the candidate",
        )
        scoped("status", "the running (else the latest) rollout", reason=False)
        for name in MOVES:
            scoped(name, f"{name} the running rollout")
        scoped("rollback", "roll back the running rollout, else the stable version")

    def handle(self, *args: Any, **options: Any) -> None:
        agent, environment = self._scope(options)
        action = options["action"]
        try:
            if action == "start":
                self._start(agent, environment, options)
            elif action == "status":
                self._status(agent, environment)
            elif action == "rollback":
                outcome = release_rollback(
                    actor=ACTOR, agent=agent, environment=environment, reason=options["reason"]
                )
                self.stdout.write(f"{outcome.summary} (revision {outcome.revision})")
            else:
                running = rollout_active(agent=agent, environment=environment)
                if running is None:
                    raise CommandError(
                        f"no rollout of {agent.slug} is running in {environment.slug}"
                    )
                result = rollout_transition(
                    actor=ACTOR, rollout_id=running.pk, event=action, reason=options["reason"]
                )
                self.stdout.write(
                    f"{self._line(result.rollout)} (revision {result.transition.revision})"
                )
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc

    def _scope(self, options: dict[str, Any]) -> tuple[Agent, Environment]:
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
            raise CommandError(f"environment {options['environment']!r}: not found") from exc
        return agent, environment

    def _start(self, agent: Agent, environment: Environment, options: dict[str, Any]) -> None:
        try:
            candidate = BundleVersion.objects.get(agent=agent, number=options["version"])
        except BundleVersion.DoesNotExist as exc:
            raise CommandError(f"{agent.slug} has no v{options['version']}") from exc
        tenants = [t.strip() for t in options["tenant_constraint"].split(",") if t.strip()]
        constraints = (
            [{"contextName": "tenantId", "operator": "IN", "values": tenants}] if tenants else []
        )
        rollout = rollout_start(
            actor=ACTOR,
            agent=agent,
            environment=environment,
            candidate=candidate,
            reason=options["reason"],
            override_reason=options["override_gate"],
            stickiness=options["stickiness"],
            constraints=constraints,
        )
        self.stdout.write(f"started: {self._line(rollout)}")

    def _status(self, agent: Agent, environment: Environment) -> None:
        rollout = (
            Rollout.objects.select_related("candidate", "baseline", "agent", "environment")
            .filter(agent=agent, environment=environment)
            .order_by("-id")
            .first()
        )
        stable = deployment_current(agent=agent, environment=environment)
        self.stdout.write(
            f"{agent.slug} in {environment.slug}: stable "
            + (f"v{stable.version.number}" if stable else "none")
        )
        if rollout is None:
            self.stdout.write("no rollout yet")
            return
        self.stdout.write(self._line(rollout))
        latest = rollout.analyses.order_by("-tick").first()
        if latest is not None:
            self.stdout.write(f"  last analysis {latest.tick:%H:%M:%S}: {latest.decision}")
            for verdict in latest.verdicts:
                self.stdout.write(
                    f"    {verdict.get('metric', '?')}: {verdict.get('verdict', '?')} "
                    f"{verdict.get('reason', '')}".rstrip()
                )
        for move in rollout.transitions.order_by("id"):
            who = "analysis" if move.automatic else move.actor_label
            self.stdout.write(
                f"  {move.created_at:%Y-%m-%d %H:%M:%S} {move.from_state} → {move.to_state} "
                f"({move.event}, {move.percentage:g}%) by {who}: {move.reason}"
            )

    @staticmethod
    def _line(rollout: Rollout) -> str:
        steps = len(rollout.plan["steps"])
        where: str = {
            str(Rollout.State.CANARY): f"step {rollout.step_index + 1}/{steps}, "
            f"{rollout.percentage:g}% of sessions",
            str(Rollout.State.SHADOW): f"shadowing {rollout.shadow_percentage:g}% of sessions",
        }.get(rollout.state, "")
        if rollout.state == Rollout.State.PAUSED:
            where = f"paused from {rollout.paused_from}, {rollout.percentage:g}% of sessions"
        return (
            f"rollout #{rollout.pk} v{rollout.baseline.number} → v{rollout.candidate.number}: "
            f"{rollout.state}" + (f" ({where})" if where else "") + f", version {rollout.sequence}"
        )
