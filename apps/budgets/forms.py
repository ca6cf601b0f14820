"""The budget form: the fields of ``services.budget_validate`` in the operator's words, the
agent and environment chosen among the tenant's."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.core.ui import ExpectedVersionField
from apps.tenancy.models import Agent, Environment, Tenant

from .models import DEFAULT_THRESHOLDS, Action, Budget, DegradeMode, Scope, Window

# service error key -> form field
ERROR_FIELDS = {
    "limits": "limit_cost_usd",
    "limits.cost_usd": "limit_cost_usd",
    "limits.tokens": "limit_tokens",
    "limits.requests": "limit_requests",
    "limits.tool_calls": "limit_tool_calls",
}
LIMIT_FIELDS = {
    "cost_usd": "limit_cost_usd",
    "tokens": "limit_tokens",
    "requests": "limit_requests",
    "tool_calls": "limit_tool_calls",
}


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return text
    return str(value)


class BudgetForm(forms.Form):
    name = forms.CharField(max_length=120, help_text="e.g. support-bot hourly")
    scope = forms.ChoiceField(
        choices=Scope.choices,
        help_text="Each agent / each end user: one counter per agent or end user, each with "
        "the full limit.",
    )
    agent = forms.ChoiceField(
        required=False, help_text="For the one-agent and each-end-user scopes."
    )
    environment = forms.ChoiceField(required=False)
    window = forms.ChoiceField(
        choices=Window.choices, help_text="Calendar boundaries in the tenant's time zone."
    )
    limit_cost_usd = forms.CharField(
        label="Cost limit (USD)", required=False, max_length=30, help_text="e.g. 5.00"
    )
    limit_tokens = forms.CharField(
        label="Token limit", required=False, max_length=30, help_text="input plus output"
    )
    limit_requests = forms.CharField(label="Request limit", required=False, max_length=30)
    limit_tool_calls = forms.CharField(label="Tool call limit", required=False, max_length=30)
    action = forms.ChoiceField(
        label="At the limit", choices=Action.choices, initial=Action.ALERT.value
    )
    degrade_mode = forms.ChoiceField(
        label="Degrade to",
        required=False,
        choices=[("", "—"), *DegradeMode.choices],
        help_text="Only when degrading.",
    )
    degrade_model = forms.CharField(
        label="Cheaper model", required=False, max_length=120, help_text="e.g. gpt-4o-mini"
    )
    strict = forms.BooleanField(
        label="Strict: runtimes reserve before each expensive step", required=False
    )
    thresholds = forms.CharField(
        label="Alert at (%)",
        required=False,
        max_length=60,
        initial=", ".join(str(t) for t in DEFAULT_THRESHOLDS),
        help_text="Whole percentages, separated by commas.",
    )
    description = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
    )

    def __init__(
        self,
        *args: Any,
        tenant: Tenant,
        agents: Iterable[Agent],
        environments: Iterable[Environment],
        editing: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        self.agents = {agent.slug: agent for agent in agents}
        self.environments = {environment.slug: environment for environment in environments}
        self.fields["agent"].choices = [("", "—")] + [  # type: ignore[attr-defined]
            (slug, agent.name) for slug, agent in self.agents.items()
        ]
        self.fields["environment"].choices = [("", "Every environment")] + [  # type: ignore[attr-defined]
            (slug, environment.name) for slug, environment in self.environments.items()
        ]
        if editing:
            # The budget's version the form was filled from: saving is refused if it moved.
            self.fields["expected_version"] = ExpectedVersionField()

    @staticmethod
    def initial_of(budget: Budget) -> dict[str, Any]:
        """The form's values for an existing budget."""
        initial: dict[str, Any] = {
            "name": budget.name,
            "scope": budget.scope,
            "agent": budget.agent.slug if budget.agent else "",
            "environment": budget.environment.slug if budget.environment else "",
            "window": budget.window,
            "action": budget.action,
            "degrade_mode": budget.degrade_mode,
            "degrade_model": budget.degrade_model,
            "strict": budget.strict,
            "thresholds": ", ".join(str(t) for t in budget.thresholds),
            "description": budget.description,
            "expected_version": budget.version,
        }
        for metric, field in LIMIT_FIELDS.items():
            initial[field] = _plain(budget.limits()[metric])
        return initial

    def definition(self) -> dict[str, Any]:
        """The service's input (``budget_validate``'s shape) from the cleaned data."""
        data = self.cleaned_data
        return {
            "name": data["name"],
            "scope": data["scope"],
            "agent": self.agents.get(data.get("agent") or ""),
            "environment": self.environments.get(data.get("environment") or ""),
            "window": data["window"],
            "limits": {metric: data.get(field) or None for metric, field in LIMIT_FIELDS.items()},
            "action": data["action"],
            "degrade_mode": data.get("degrade_mode") or "",
            "degrade_model": data.get("degrade_model") or "",
            "strict": bool(data.get("strict")),
            "thresholds": data.get("thresholds") or "",
            "description": data.get("description") or "",
        }

    def add_service_errors(self, exc: ValidationError) -> None:
        """Put the service's errors (keyed ``limits.cost_usd``…) next to their fields."""
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)  # keeps the code ("stale" for a StaleVersion)
            return
        for key, messages in exc.message_dict.items():
            field = ERROR_FIELDS.get(key, key)
            self.add_error(field if field in self.fields else None, messages)
