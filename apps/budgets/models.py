"""Budgets over telemetry (docs/budgets.md).

* ``Budget``: a limit on what a scope of a tenant may consume per calendar window (cost in USD,
  tokens, requests, tool calls), what happens at the limit, and the alert thresholds.
* ``BudgetUsage``: one counter per (budget, window start, subject): consumed (from telemetry)
  and reserved (strict budgets' in-flight reservations and settled holds). ``subject`` is
  ``""`` for the ``tenant`` and ``agent`` scopes, the agent id for ``tenant_agent``, the
  end-user hash for ``end_user``. A new window is a new row: windows reset by construction.
* ``Reservation``: one strict budget's share of a runtime's reservation (``key`` = the
  runtime's ``reservation_id``), held on a usage row until settled and released.
* ``BudgetMark``: a threshold crossed in one window for one subject; its unique key is what
  makes each alert fire once per window, and the 100% mark what the window roll looks for.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models.functions import Lower

METRICS = ("cost_usd", "tokens", "requests", "tool_calls")
DEFAULT_THRESHOLDS = [50, 80, 100]


class Scope(models.TextChoices):
    TENANT = "tenant", "Whole tenant"
    AGENT = "agent", "One agent"
    TENANT_AGENT = "tenant_agent", "Each agent of the tenant"
    END_USER = "end_user", "Each end user of one agent"


PER_SUBJECT_SCOPES = (Scope.TENANT_AGENT.value, Scope.END_USER.value)
AGENT_SCOPES = (Scope.AGENT.value, Scope.END_USER.value)


class Window(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"
    WEEK = "week", "Week (from Monday)"
    MONTH = "month", "Month"


class Action(models.TextChoices):
    ALERT = "alert", "Alert only"
    BLOCK = "block", "Block new requests"
    DEGRADE = "degrade", "Degrade"


class DegradeMode(models.TextChoices):
    DRAFT_ONLY = "draft_only", "Draft only (no actions executed)"
    MODEL = "model", "Cheaper model"


class Budget(models.Model):
    """A limit per scope and calendar window (in the tenant's time zone). Limits left null are
    not limited; at least one is set. ``thresholds``: whole percentages, ascending, each
    1 to 100. ``environment`` null: every environment of the tenant."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="budgets")
    name = models.CharField(max_length=120)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    agent = models.ForeignKey(
        "tenancy.Agent", on_delete=models.PROTECT, null=True, blank=True, related_name="budgets"
    )
    environment = models.ForeignKey(
        "tenancy.Environment",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="budgets",
    )
    window = models.CharField(max_length=8, choices=Window.choices)
    limit_cost_usd = models.DecimalField(max_digits=18, decimal_places=8, null=True, blank=True)
    limit_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    limit_requests = models.PositiveBigIntegerField(null=True, blank=True)
    limit_tool_calls = models.PositiveBigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.ALERT)
    degrade_mode = models.CharField(max_length=16, choices=DegradeMode.choices, blank=True)
    degrade_model = models.CharField(max_length=120, blank=True)
    strict = models.BooleanField(default=False)
    thresholds = models.JSONField(default=list)
    description = models.TextField(blank=True, max_length=2000)
    version = models.PositiveIntegerField(default=1)
    updated_by_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("tenant_id", "name")
        constraints = [
            # names compare without case (the service also folds runs of spaces): two
            # creates racing with "Daily" and "daily" cannot both land
            models.UniqueConstraint("tenant", Lower("name"), name="budget_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    def limits(self) -> dict[str, Decimal | int | None]:
        """``{metric: limit or None}`` for the four ``METRICS``."""
        return {
            "cost_usd": self.limit_cost_usd,
            "tokens": self.limit_tokens,
            "requests": self.limit_requests,
            "tool_calls": self.limit_tool_calls,
        }

    def snapshot(self) -> dict[str, Any]:
        """The audited form (before/after of a change)."""
        return {
            "name": self.name,
            "scope": self.scope,
            "agent": self.agent.slug if self.agent is not None else None,
            "environment": self.environment.slug if self.environment is not None else None,
            "window": self.window,
            "limits": {
                name: (str(value) if isinstance(value, Decimal) else value)
                for name, value in self.limits().items()
            },
            "action": self.action,
            "degrade_mode": self.degrade_mode,
            "degrade_model": self.degrade_model,
            "strict": self.strict,
            "thresholds": list(self.thresholds),
            "description": self.description,
        }


class BudgetUsage(models.Model):
    """Consumption and reservations of one budget, window and subject."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="usage")
    window_start = models.DateTimeField()
    subject = models.CharField(max_length=128, blank=True, default="")
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    tokens = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    tool_calls = models.BigIntegerField(default=0)
    reserved_cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    reserved_tokens = models.BigIntegerField(default=0)
    reserved_requests = models.BigIntegerField(default=0)
    reserved_tool_calls = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("budget", "window_start", "subject"), name="budget_usage_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.budget_id}@{self.window_start.isoformat()}:{self.subject}"

    def consumed(self) -> dict[str, Decimal | int]:
        return {name: getattr(self, name) for name in METRICS}

    def reserved(self) -> dict[str, Decimal | int]:
        return {name: getattr(self, f"reserved_{name}") for name in METRICS}


class ReservationStatus(models.TextChoices):
    RESERVED = "reserved"  # an estimate held for a step in flight
    SETTLED = "settled"  # the actual amount held until the request's record arrives
    RELEASED = "released"  # the record arrived (telemetry counts it) or nothing was owed
    EXPIRED = "expired"  # the TTL passed before settle or before the record


HELD = (ReservationStatus.RESERVED.value, ReservationStatus.SETTLED.value)


class Reservation(models.Model):
    """One strict budget's part of a runtime's reservation; amounts are what is held now, on
    the counter ``(budget, window_start, subject)`` (a ``BudgetUsage``)."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    # the runtime token's environment: a reservation id names one only within it
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.CASCADE, related_name="+"
    )
    key = models.CharField(max_length=128)
    request_id = models.CharField(max_length=128, blank=True, default="")
    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="reservations")
    window_start = models.DateTimeField()
    subject = models.CharField(max_length=128, blank=True, default="")
    cost_usd = models.DecimalField(max_digits=18, decimal_places=8, default=0)
    tokens = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    tool_calls = models.BigIntegerField(default=0)
    status = models.CharField(
        max_length=10, choices=ReservationStatus.choices, default=ReservationStatus.RESERVED
    )
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("environment", "key", "budget"), name="budget_reservation_unique"
            ),
        ]
        indexes = [
            models.Index(fields=("tenant", "request_id"), name="budget_resv_request"),
            models.Index(fields=("status", "expires_at"), name="budget_resv_expiry"),
        ]

    def __str__(self) -> str:
        return self.key

    def amounts(self) -> dict[str, Decimal | int]:
        return {name: getattr(self, name) for name in METRICS}


class BudgetMark(models.Model):
    """``threshold`` percent of ``budget`` reached in the window starting ``window_start`` by
    ``subject``. ``rolled``: for the 100% mark of a blocking or degrading budget, the window
    roll has re-announced the budget (runtimes un-blocked)."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="marks")
    window_start = models.DateTimeField()
    subject = models.CharField(max_length=128, blank=True, default="")
    threshold = models.PositiveSmallIntegerField()
    percent = models.DecimalField(max_digits=9, decimal_places=2, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    rolled = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=("budget", "window_start", "subject", "threshold"),
                name="budget_mark_unique",
            ),
        ]
        indexes = [models.Index(fields=("threshold", "rolled"), name="budget_mark_roll")]

    def __str__(self) -> str:
        return f"{self.budget_id}: {self.threshold}% of {self.window_start.isoformat()}"
