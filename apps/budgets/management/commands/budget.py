"""``./manage.py budget list|show|create|update|delete``: budgets from a terminal, through the
same services as the UI and the API (acting as ``SystemActor("cli:<login>")``, audited).

    ./manage.py budget create --tenant acme --name "support-bot hourly" --scope agent \\
        --agent support-bot --window hour --limit-cost 5 --limit-tool-calls 2000 \\
        --action block --strict
    ./manage.py budget update 12 --limit-cost 7.50 --limit-tool-calls none
    ./manage.py budget show 12
    ./manage.py budget delete 12 --reason "replaced by the daily budget"

A budget is named by its id, or by its name with ``--tenant``. Errors are one line each on
standard error with exit status 1 (``CommandError``)."""

from __future__ import annotations

import getpass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.services import SystemActor
from apps.budgets.api.serializers import decimal_text
from apps.budgets.models import Action, Budget, DegradeMode, Scope, Window
from apps.budgets.selectors import budget_definition, budget_status, subject_labels
from apps.budgets.services import budget_create, budget_delete, budget_update
from apps.tenancy.models import Agent, Environment, Tenant

# option -> metric of the limits
LIMIT_OPTIONS = {
    "limit_cost": "cost_usd",
    "limit_tokens": "tokens",
    "limit_requests": "requests",
    "limit_tool_calls": "tool_calls",
}
NONE_WORDS = ("none", "null", "-")


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(m)}" for field, m in exc.message_dict.items())
    return "; ".join(exc.messages)


def _limit_text(value: Any) -> str:
    if value is None:
        return "-"
    return str(decimal_text(value)) if isinstance(value, Decimal) else str(value)


class Command(BaseCommand):
    help = (
        "Budgets: list them, show one with its current window, create, update (only the "
        "options given change) or delete one. Limits: --limit-cost USD, --limit-tokens, "
        "--limit-requests, --limit-tool-calls ('none' removes a limit on update)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        listing = actions.add_parser("list", help="every budget, or one tenant's")
        listing.add_argument("--tenant", help="tenant slug")
        show = actions.add_parser("show", help="one budget and its current window")
        self._which(show)
        create = actions.add_parser("create", help="create a budget")
        create.add_argument("--tenant", required=True, help="tenant slug")
        self._definition(create, creating=True)
        update = actions.add_parser("update", help="change a budget (only the options given)")
        self._which(update)
        self._definition(update, creating=False)
        update.add_argument(
            "--expected-version",
            type=int,
            help="refuse the change if the budget's version is no longer this one",
        )
        delete = actions.add_parser("delete", help="delete a budget and its counters")
        self._which(delete)
        delete.add_argument("--reason", required=True, help="why (kept in the audit log)")

    @staticmethod
    def _which(parser: CommandParser) -> None:
        parser.add_argument("budget", help="budget id, or its name with --tenant")
        parser.add_argument("--tenant", help="tenant slug (when naming the budget by name)")

    @staticmethod
    def _definition(parser: CommandParser, *, creating: bool) -> None:
        parser.add_argument("--name", required=creating)
        parser.add_argument("--scope", choices=Scope.values, required=creating)
        parser.add_argument("--agent", help="agent slug (agent and end_user scopes)")
        parser.add_argument(
            "--environment", help="environment slug; default: every environment ('none' too)"
        )
        parser.add_argument("--window", choices=Window.values, required=creating)
        parser.add_argument("--limit-cost", metavar="USD")
        parser.add_argument("--limit-tokens", metavar="N")
        parser.add_argument("--limit-requests", metavar="N")
        parser.add_argument("--limit-tool-calls", metavar="N")
        parser.add_argument("--action", dest="at_limit", choices=Action.values)
        parser.add_argument("--degrade-mode", choices=DegradeMode.values)
        parser.add_argument("--degrade-model", help="the cheaper model (--degrade-mode model)")
        parser.add_argument(
            "--strict",
            action="store_true",
            default=None,
            help="runtimes reserve before each expensive step",
        )
        parser.add_argument("--no-strict", dest="strict", action="store_false")
        parser.add_argument("--thresholds", metavar="50,80,100", help="alert percentages")
        parser.add_argument("--description")
        parser.add_argument("--reason", default="", help="kept in the audit log")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = SystemActor(f"cli:{getpass.getuser()}")
        action = options["action"]
        try:
            if action == "list":
                self._list(options.get("tenant"))
            elif action == "show":
                self._show(self._budget(options))
            elif action == "create":
                tenant = self._tenant(options["tenant"])
                data = self._data(tenant, options, {"limits": {}})
                budget = budget_create(
                    actor=actor, tenant=tenant, data=data, reason=options["reason"]
                )
                self.stdout.write(f"created: {self._line(budget)}")
            elif action == "update":
                budget = self._budget(options)
                data = self._data(budget.tenant, options, budget_definition(budget))
                budget = budget_update(
                    actor=actor,
                    budget=budget,
                    data=data,
                    expected_version=options["expected_version"],
                    reason=options["reason"],
                )
                self.stdout.write(f"updated: {self._line(budget)}")
            else:
                budget = self._budget(options)
                budget_delete(actor=actor, budget=budget, reason=options["reason"])
                self.stdout.write(f"deleted: budget #{budget.pk} {budget.name}")
        except ValidationError as exc:
            raise CommandError(_messages(exc)) from exc

    # ------------------------------------------------------------------ lookups

    @staticmethod
    def _tenant(slug: str) -> Tenant:
        try:
            return Tenant.objects.get(slug=slug)
        except Tenant.DoesNotExist:
            raise CommandError(f"tenant {slug!r}: not found") from None

    def _budget(self, options: dict[str, Any]) -> Budget:
        which = str(options["budget"])
        budgets = Budget.objects.select_related("tenant", "agent", "environment")
        if options.get("tenant"):
            budgets = budgets.filter(tenant=self._tenant(options["tenant"]))
        found = (
            budgets.filter(pk=int(which))
            if which.isascii() and which.isdigit() and len(which) < 19
            else budgets.none()
        )
        if not found:
            found = budgets.filter(name=which)
        if len(found) != 1:
            problem = "not found" if not found else "ambiguous, pass --tenant"
            raise CommandError(f"budget {which!r}: {problem}")
        return found[0]

    def _data(
        self, tenant: Tenant, options: dict[str, Any], current: dict[str, Any]
    ) -> dict[str, Any]:
        """``current`` with what the options say (the service's input shape)."""
        data = dict(current)
        data["limits"] = dict(current.get("limits") or {})
        for option, field in (
            ("name", "name"),
            ("scope", "scope"),
            ("window", "window"),
            ("at_limit", "action"),
            ("degrade_mode", "degrade_mode"),
            ("degrade_model", "degrade_model"),
            ("strict", "strict"),
            ("thresholds", "thresholds"),
            ("description", "description"),
        ):
            if options.get(option) is not None:
                data[field] = options[option]
        for option, metric in LIMIT_OPTIONS.items():
            value = options.get(option)
            if value is not None:
                data["limits"][metric] = None if value.lower() in NONE_WORDS else value
        if options.get("agent") is not None:
            data["agent"] = self._in_tenant(Agent, tenant, options["agent"], "agent")
        elif data.get("scope") not in ("agent", "end_user"):
            data["agent"] = None
        if options.get("environment") is not None:
            data["environment"] = self._in_tenant(
                Environment, tenant, options["environment"], "environment"
            )
        return data

    @staticmethod
    def _in_tenant(model: Any, tenant: Tenant, slug: str, what: str) -> Any:
        if slug.lower() in NONE_WORDS:
            return None
        found = model.objects.filter(tenant=tenant, slug=slug).first()
        if found is None:
            raise CommandError(f"{what} {slug!r}: not found in tenant {tenant.slug}")
        return found

    # ------------------------------------------------------------------ output

    def _list(self, tenant_slug: str | None) -> None:
        budgets = Budget.objects.select_related("tenant", "agent", "environment").order_by(
            "tenant__slug", "name"
        )
        if tenant_slug:
            budgets = budgets.filter(tenant=self._tenant(tenant_slug))
        if not budgets:
            self.stdout.write(
                "no budgets yet: ./manage.py budget create --tenant SLUG --name NAME "
                "--scope tenant --window day --limit-cost 50"
            )
            return
        for budget in budgets:
            status = budget_status(budget)
            self.stdout.write(
                f"{self._line(budget)}: {status.state}, {status.percent}% of "
                f"{status.metric.replace('_', ' ')}"
            )

    def _show(self, budget: Budget) -> None:
        status = budget_status(budget)
        self.stdout.write(self._line(budget))
        limits = ", ".join(f"{m} {_limit_text(v)}" for m, v in budget.limits().items())
        self.stdout.write(f"  limits: {limits}")
        self.stdout.write(
            f"  action at the limit: {budget.action}"
            + (
                f" ({budget.degrade_mode} {budget.degrade_model})".rstrip()
                if budget.degrade_mode
                else ""
            )
            + (", strict (reservations)" if budget.strict else "")
            + f"; alerts at {', '.join(f'{t}%' for t in budget.thresholds)}"
        )
        self.stdout.write(
            f"  window {status.window_start:%Y-%m-%d %H:%M} to {status.resets_at:%Y-%m-%d %H:%M} "
            f"UTC: {status.state}, {status.percent}% of {status.metric.replace('_', ' ')}"
        )
        consumed = ", ".join(f"{m} {_limit_text(v)}" for m, v in status.consumed.items())
        reserved = ", ".join(f"{m} {_limit_text(v)}" for m, v in status.reserved.items())
        self.stdout.write(f"  consumed: {consumed}")
        self.stdout.write(f"  reserved: {reserved}")
        if status.exhausts_at is not None:
            self.stdout.write(f"  projected to run out at {status.exhausts_at:%Y-%m-%d %H:%M} UTC")
        if status.exhausted_subjects and budget.scope in ("tenant_agent", "end_user"):
            labels = subject_labels(budget, status.exhausted_subjects)
            self.stdout.write(
                "  at the limit: " + ", ".join(sorted(labels[s] for s in status.exhausted_subjects))
            )
        self.stdout.write(f"  version {budget.version}, last changed by {budget.updated_by_label}")

    @staticmethod
    def _line(budget: Budget) -> str:
        where = {
            "tenant": "the whole tenant",
            "agent": f"agent {budget.agent.slug if budget.agent else '?'}",
            "tenant_agent": "each agent",
            "end_user": f"each end user of {budget.agent.slug if budget.agent else '?'}",
        }[budget.scope]
        environment = budget.environment.slug if budget.environment else "every environment"
        return (
            f"budget #{budget.pk} {budget.name} ({budget.tenant.slug}): {where}, {environment}, "
            f"per {budget.window}, {budget.action}"
        )
