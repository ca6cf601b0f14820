"""``/api/v1/budgets/``: budgets of your tenants (docs/budgets.md) and the current window of
each (``…/{id}/status/``). Agents and environments are named by slug within the budget's
tenant; every change goes through ``apps.budgets.services`` (authorised and audited there)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import (
    IF_MATCH,
    ConflictSerializer,
    ErrorSerializer,
    ScopedViewSet,
    expected_version,
)
from apps.core.api_http import ExactNumberJSONParser
from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.selectors import tenant_get_for_user

from .. import selectors, services
from ..models import AGENT_SCOPES, METRICS, PER_SUBJECT_SCOPES, Budget
from . import serializers as s
from .filters import BudgetListFilter

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
CHANGE_ERRORS = {**ERRORS, 409: ConflictSerializer}
DEFINITION = (
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
)


def _by_slug(tenant: Tenant, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """``data`` with ``agent`` and ``environment`` slugs replaced by the tenant's objects
    (archived ones too: ``budget_validate`` says why they cannot be used), and the errors of
    slugs naming nothing in the tenant."""
    errors: dict[str, list[str]] = {}
    resolved = dict(data)
    for name, model, message in (
        ("agent", Agent, "No such agent in this tenant."),
        ("environment", Environment, "No such environment in this tenant."),
    ):
        slug = resolved.get(name)
        if not slug or not isinstance(slug, str):
            resolved[name] = None
            continue
        found = model.objects.filter(tenant=tenant, slug=slug).first()
        if found is None:
            errors[name] = [message]
        resolved[name] = found
    return resolved, errors


def _definition(tenant: Tenant, data: dict[str, Any]) -> dict[str, Any]:
    """The service's input from an API body; unknown slugs are field errors reported with
    the service's own (one 400 names every bad field)."""
    resolved, errors = _by_slug(tenant, data)
    if errors:
        try:
            services.budget_validate(tenant=tenant, data=resolved)
        except DjangoValidationError as exc:
            errors = {**exc.message_dict, **errors}
        raise DjangoValidationError(errors)
    return resolved


def _amounts(values: dict[str, Any]) -> dict[str, Any]:
    return {
        metric: (s.decimal_text(values[metric]) if metric == "cost_usd" else round(values[metric]))
        for metric in METRICS
    }


def status_document(budget: Budget) -> dict[str, Any]:
    """The current window of ``budget`` as the status endpoint answers it."""
    current = selectors.budget_status(budget)
    exhausted: list[str] = []
    if budget.scope in PER_SUBJECT_SCOPES:
        labels = selectors.subject_labels(budget, current.exhausted_subjects)
        exhausted = sorted(labels[subject] for subject in current.exhausted_subjects)
    return {
        "id": budget.pk,
        "name": budget.name,
        "window": budget.window,
        "window_start": current.window_start,
        "resets_at": current.resets_at,
        "limits": s.limits_document(budget),
        "consumed": _amounts(current.consumed),
        "reserved": _amounts(current.reserved),
        "percent": str(current.percent),
        "metric": current.metric,
        "state": current.state,
        "subjects": current.subjects,
        "exhausted_subjects": exhausted,
        "projected": _amounts(current.projected),
        "exhausts_at": current.exhausts_at,
    }


class BudgetViewSet(ScopedViewSet):
    """Budgets of your tenants: limits on cost, tokens, requests and tool calls per scope and
    calendar window (docs/budgets.md). Changes carry the ``version`` you read
    (``expected_version`` or ``If-Match``) to be refused with 409 if someone changed the
    budget since."""

    permission_model = Budget
    filterset_class = BudgetListFilter
    # limits keep every digit of a JSON number ("5.10" sent as 5.1 stays 5.1, not 5.0999…)
    parser_classes = [ExactNumberJSONParser]

    def scoped_queryset(self) -> QuerySet[Budget]:
        return selectors.budget_list_for_user(user=self.request.user, action=self.permission_action)

    @extend_schema(responses={200: s.BudgetOutput(many=True), **ERRORS})
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), s.BudgetOutput)

    @extend_schema(responses={200: s.BudgetOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One budget; its ``ETag`` is its ``version``, ready for ``If-Match`` on a change."""
        budget = self.get_object()
        return Response(s.BudgetOutput(budget).data, headers={"ETag": f'"{budget.version}"'})

    @extend_schema(request=s.BudgetCreateInput, responses={201: s.BudgetOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        """Create a budget; it starts with what its scope already consumed in the current
        window. 400 with errors by field (``limits.cost_usd``…)."""
        data: dict[str, Any] = self.validated(s.BudgetCreateInput)
        tenant = tenant_get_for_user(user=request.user, pk=data.pop("tenant"))
        reason = data.pop("reason", "")
        budget = services.budget_create(
            actor=request.user, tenant=tenant, data=_definition(tenant, data), reason=reason
        )
        return Response(
            s.BudgetOutput(budget).data,
            status=status.HTTP_201_CREATED,
            headers={"ETag": f'"{budget.version}"'},
        )

    def _change(self, request: Request, *, partial: bool) -> Response:
        budget = self.get_object()
        serializer = s.BudgetUpdateInput(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(serializer.validated_data)
        seen = expected_version(request, data)
        reason = data.pop("reason", "")
        if partial:
            current = selectors.budget_definition(budget)
            current["agent"] = budget.agent.slug if budget.agent else None
            current["environment"] = budget.environment.slug if budget.environment else None
            if "scope" in data and "agent" not in data and data["scope"] not in AGENT_SCOPES:
                # a scope that names no agent: the agent goes with the old scope (as the CLI)
                current["agent"] = None
            limits = data.pop("limits", None)
            if limits is not None:
                if isinstance(limits, dict):
                    limits = {**current["limits"], **limits}
                current["limits"] = limits
            data = {**current, **data}
        updated = services.budget_update(
            actor=request.user,
            budget=budget,
            data=_definition(budget.tenant, {k: data.get(k) for k in DEFINITION if k in data}),
            expected_version=seen,
            reason=reason,
        )
        return Response(s.BudgetOutput(updated).data, headers={"ETag": f'"{updated.version}"'})

    @extend_schema(
        request=s.BudgetUpdateInput,
        parameters=[IF_MATCH],
        responses={200: s.BudgetOutput, **CHANGE_ERRORS},
    )
    def update(self, request: Request, pk: str) -> Response:
        """Replace the definition. A change of scope, agent, environment or window recounts
        the current window from telemetry. 409 if the version you send is stale."""
        return self._change(request, partial=False)

    @extend_schema(
        request=s.BudgetUpdateInput,
        parameters=[IF_MATCH],
        responses={200: s.BudgetOutput, **CHANGE_ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change some fields; ``limits`` merges by metric (null: no longer limited). 409 if
        the version you send is stale."""
        return self._change(request, partial=True)

    @extend_schema(
        request=s.BudgetDeleteInput,
        parameters=[OpenApiParameter("reason", str), IF_MATCH],
        responses={204: None, **CHANGE_ERRORS},
    )
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete the budget with its counters; runtimes stop enforcing it on the next
        revision. 409 if the version you send is stale."""
        budget = self.get_object()
        data: dict[str, Any] = self.validated(s.BudgetDeleteInput)
        seen = expected_version(request, data)
        services.budget_delete(
            actor=request.user,
            budget=budget,
            reason=data.get("reason") or request.query_params.get("reason", ""),
            expected_version=seen,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="A budget's current window: consumed, reserved, left",
        responses={200: s.BudgetStatusOutput, **ERRORS},
    )
    @action(detail=True, methods=["get"], url_path="status", url_name="status")
    def window_status(self, request: Request, pk: str) -> Response:
        """The current window: consumed and reserved (all subjects), the highest share of a
        limit used and its metric, the subjects at a limit, when the window resets, and the
        linear forecast of its end (``projected``, ``exhausts_at``)."""
        return Response(s.BudgetStatusOutput(status_document(self.get_object())).data)
