"""``POST /api/runtime/v1/budgets/reserve`` and ``…/settle``: strict budgets' reservations
(docs/budgets.md). Django, not the fast path: a reservation is a conditional write whose cost
is the database's (docs/decisions/0025-budget-reservations.md)."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.api.authentication import RuntimeTokenAPIView
from apps.core.api import ErrorSerializer
from apps.tenancy.models import Agent

from ..services import UnknownReservation, budget_reserve, budget_settle

_ID = re.compile(r"^[\w.:@/-]{1,128}$")
_HASH = re.compile(r"^[\w.:@/+=-]{0,128}$")


class AmountsSerializer(serializers.Serializer):
    cost_usd = serializers.DecimalField(max_digits=18, decimal_places=8, required=False)
    tokens = serializers.IntegerField(min_value=0, required=False)
    requests = serializers.IntegerField(min_value=0, required=False)
    tool_calls = serializers.IntegerField(min_value=0, required=False)


class ReserveInput(serializers.Serializer):
    reservation_id = serializers.CharField(help_text="idempotency key, 1-128 of [\\w.:@/-]")
    request_id = serializers.CharField(required=False, help_text="the request the step is of")
    agent = serializers.CharField(help_text="the agent's slug")
    end_user_hash = serializers.CharField(required=False)
    estimate = AmountsSerializer()


class ReserveOutput(serializers.Serializer):
    reservation_id = serializers.CharField()
    granted = serializers.BooleanField()
    expires_at = serializers.DateTimeField(required=False)
    refused_by = serializers.DictField(required=False)
    budgets = serializers.ListField(child=serializers.DictField())


class SettleInput(serializers.Serializer):
    reservation_id = serializers.CharField()
    actual = AmountsSerializer()


class SettleOutput(serializers.Serializer):
    reservation_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["settled", "released", "expired"])
    duplicate = serializers.BooleanField()


def _body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["Send a JSON object."]})
    return request.data


def _identifier(
    body: dict[str, Any], name: str, errors: dict[str, list[str]], *, required: bool
) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not _ID.match(value):
        errors[name] = ["1-128 of letters, digits and . : @ / - _"]
        return ""
    return value


class ReserveView(RuntimeTokenAPIView):
    """Hold an estimate on every strict budget in scope, or refuse with what remains."""

    @extend_schema(
        request=ReserveInput,
        responses={
            200: ReserveOutput,
            400: ErrorSerializer,
            401: ErrorSerializer,
            404: ErrorSerializer,
        },
        tags=["runtime"],
    )
    def post(self, request: Request) -> Response:
        token = self.runtime_token(request)
        body = _body(request)
        errors: dict[str, list[str]] = {}
        key = _identifier(body, "reservation_id", errors, required=True)
        request_id = _identifier(body, "request_id", errors, required=False)
        slug = body.get("agent")
        if not isinstance(slug, str) or not slug or len(slug) > 100:
            errors["agent"] = ["The agent's slug."]
        user = body.get("end_user_hash", "")
        if not isinstance(user, str) or not _HASH.match(user):
            errors["end_user_hash"] = ["At most 128 of letters, digits and . : @ / + = - _"]
        if "estimate" not in body:
            errors["estimate"] = ["Required: the step's estimate (cost_usd, tokens, ...)."]
        if errors:
            raise exceptions.ValidationError(errors)
        agents = Agent.objects.filter(
            tenant_id=token.tenant_id, slug=slug, archived_at__isnull=True
        )
        if token.agent_id is not None:
            agents = agents.filter(pk=token.agent_id)
        agent = agents.first()
        if agent is None:
            raise exceptions.NotFound(f"No agent {slug!r} in this token's scope.")
        answer = budget_reserve(
            tenant_id=token.tenant_id,
            environment_id=token.environment_id,
            agent=agent,
            key=key,
            request_id=request_id,
            end_user_hash=user,
            estimate=body["estimate"],
        )
        return Response(answer.as_json())


class SettleView(RuntimeTokenAPIView):
    """Replace a reservation's estimate by the actual amounts (idempotent)."""

    @extend_schema(
        request=SettleInput,
        responses={
            200: SettleOutput,
            400: ErrorSerializer,
            401: ErrorSerializer,
            404: ErrorSerializer,
        },
        tags=["runtime"],
    )
    def post(self, request: Request) -> Response:
        token = self.runtime_token(request)
        body = _body(request)
        errors: dict[str, list[str]] = {}
        key = _identifier(body, "reservation_id", errors, required=True)
        if "actual" not in body:
            errors["actual"] = ["Required: what the step really used (cost_usd, tokens, ...)."]
        if errors:
            raise exceptions.ValidationError(errors)
        try:
            answer = budget_settle(tenant_id=token.tenant_id, key=key, actual=body["actual"])
        except UnknownReservation as exc:
            raise exceptions.NotFound(f"No reservation {key!r}.") from exc
        return Response(answer.as_json())
