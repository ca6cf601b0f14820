"""Input and output shapes of the operator budgets API (``/api/v1/budgets/``).

Inputs check only the JSON types; what a budget may be (a scope needing an agent, limits
above 0, thresholds 1 to 100…) is ``services.budget_validate``'s, whose field errors
(``limits.cost_usd``) reach the client under the same keys."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.api import ExpectedVersionMixin, OptionalReasonMixin

from ..models import Action, Budget, DegradeMode, Scope, Window


def decimal_text(value: Decimal | None) -> str | None:
    """A USD amount as the API writes it: plain digits, at least two decimals ("5.00")."""
    if value is None:
        return None
    normal = value.normalize()
    if normal == normal.to_integral_value() or -normal.as_tuple().exponent < 2:  # type: ignore[operator]
        return f"{value:.2f}"
    return format(normal, "f")


class LimitsSchema(serializers.Serializer):
    """The limits object (schema only: ``budget_validate`` reads it)."""

    cost_usd = serializers.CharField(
        allow_null=True, required=False, help_text='USD as a decimal string, "5.00"; null: none'
    )
    tokens = serializers.IntegerField(
        allow_null=True, required=False, help_text="input plus output tokens; null: no limit"
    )
    requests = serializers.IntegerField(allow_null=True, required=False)
    tool_calls = serializers.IntegerField(allow_null=True, required=False)


@extend_schema_field(LimitsSchema)
class LimitsField(serializers.JSONField):
    """``{"cost_usd": "5.00", "tokens": null, "requests": null, "tool_calls": 20}``, passed
    as sent to ``budget_validate`` (errors keyed ``limits.<metric>``)."""


@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "integer", "minimum": 1, "maximum": 100},
        "maxItems": 10,
    }
)
class ThresholdsField(serializers.JSONField):
    """A list of whole percentages, passed as sent to ``budget_validate`` (its errors are
    keyed ``thresholds``)."""


class StatusLimitsOutput(serializers.Serializer):
    cost_usd = serializers.CharField(allow_null=True)
    tokens = serializers.IntegerField(allow_null=True)
    requests = serializers.IntegerField(allow_null=True)
    tool_calls = serializers.IntegerField(allow_null=True)


class AmountsOutput(serializers.Serializer):
    cost_usd = serializers.CharField()
    tokens = serializers.IntegerField()
    requests = serializers.IntegerField()
    tool_calls = serializers.IntegerField()


class BudgetOutput(serializers.ModelSerializer):
    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True)
    agent = serializers.CharField(source="agent.slug", read_only=True, default=None)
    environment = serializers.CharField(source="environment.slug", read_only=True, default=None)
    limits = serializers.SerializerMethodField()
    thresholds = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    updated_by = serializers.CharField(source="updated_by_label", read_only=True)

    class Meta:
        model = Budget
        fields = [
            "id",
            "tenant",
            "tenant_slug",
            "name",
            "scope",
            "agent",
            "environment",
            "window",
            "limits",
            "action",
            "degrade_mode",
            "degrade_model",
            "strict",
            "thresholds",
            "description",
            "version",
            "updated_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(StatusLimitsOutput)
    def get_limits(self, budget: Budget) -> dict[str, Any]:
        return limits_document(budget)


def limits_document(budget: Budget) -> dict[str, Any]:
    """``{metric: limit or None}``, the cost as a decimal string."""
    return {
        metric: (decimal_text(value) if isinstance(value, Decimal) else value)
        for metric, value in budget.limits().items()
    }


class _Definition(OptionalReasonMixin):
    name = serializers.CharField(max_length=200, help_text="unique within the tenant")
    scope = serializers.ChoiceField(choices=Scope.choices)
    agent = serializers.CharField(
        max_length=100,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="the agent's slug in the budget's tenant (agent and end_user scopes)",
    )
    environment = serializers.CharField(
        max_length=100,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="one environment's slug; null: every environment of the tenant",
    )
    window = serializers.ChoiceField(choices=Window.choices)
    limits = LimitsField(help_text="at least one of cost_usd, tokens, requests, tool_calls")
    action = serializers.ChoiceField(choices=Action.choices, required=False, default="alert")
    degrade_mode = serializers.ChoiceField(
        choices=[("", "none"), *DegradeMode.choices], required=False, default=""
    )
    degrade_model = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )
    strict = serializers.BooleanField(required=False, default=False)
    thresholds = ThresholdsField(
        required=False,
        help_text="up to 10 whole percentages (1-100) at which an alert is raised; "
        "default [50, 80, 100]",
    )
    description = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default=""
    )


class BudgetCreateInput(_Definition):
    tenant = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="tenant id")


class BudgetUpdateInput(ExpectedVersionMixin, _Definition):
    """PUT: the whole definition (optional fields left out take their defaults). PATCH (the
    same, partial): only the fields sent change; ``limits`` is merged by metric (a metric
    sent as null is no longer limited)."""


class BudgetDeleteInput(ExpectedVersionMixin, OptionalReasonMixin):
    pass


class BudgetStatusOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    window = serializers.CharField()
    window_start = serializers.DateTimeField()
    resets_at = serializers.DateTimeField()
    limits = StatusLimitsOutput()
    consumed = AmountsOutput()
    reserved = AmountsOutput()
    percent = serializers.CharField(help_text="the highest share of a limit used, in percent")
    metric = serializers.CharField(help_text="the metric of that share")
    state = serializers.ChoiceField(choices=["ok", "exhausted"])
    subjects = serializers.IntegerField(help_text="counters in this window (per-subject scopes)")
    exhausted_subjects = serializers.ListField(
        child=serializers.CharField(),
        help_text="tenant_agent: agent slugs at a limit; end_user: end-user hashes at a "
        "limit; empty for the tenant and agent scopes (see state)",
    )
    projected = AmountsOutput(help_text="linear forecast of the window's end at the rate so far")
    exhausts_at = serializers.DateTimeField(
        allow_null=True, help_text="when the limit is reached at the rate so far, if in window"
    )
