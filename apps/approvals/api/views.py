"""``/api/v1/approvals/``: approval requests of your queues (docs/approvals.md) and their
decisions; ``/api/v1/approval-queues/``: the queues. Every change goes through
``apps.approvals.services`` (authorised, transactional and audited there)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api import (
    IF_MATCH,
    ConflictSerializer,
    ErrorSerializer,
    ScopedViewSet,
    expected_version,
)
from apps.core.authz import user_may
from apps.tenancy.models import Tenant
from apps.tenancy.selectors import tenant_get_for_user

from .. import selectors, services
from ..models import ApprovalQueue, ApprovalRequest
from . import serializers as s
from .filters import ApprovalListFilter

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
QUEUE_FIELDS = [
    "name",
    "description",
    "position",
    "match_agents",
    "match_tools",
    "match_risks",
    "timeout_s",
    "sla_s",
    "escalate_after_s",
    "escalate_to",
    "max_open_per_session",
    "approvers",
]


def _already_decided(exc: services.AlreadyDecided) -> Response:
    request = exc.request
    return Response(
        {
            "detail": str(exc),
            "errors": {},
            "status": request.status,
            "decided_by": [label for label in request.decided_by_label.split(",") if label],
            "decided_at": request.decided_at.isoformat() if request.decided_at else None,
        },
        status=409,
    )


class ApprovalViewSet(ScopedViewSet):
    """Approval requests of your tenants (an Approver: of the queues it decides), waiting ones
    by risk and age. Decide one with ``…/{id}/decide/``; several low-risk ones with
    ``…/decide/``."""

    permission_model = ApprovalRequest
    filterset_class = ApprovalListFilter
    # deciding is checked per queue by the service (the queue's approvers); the role must
    # at least read requests to reach it
    permission_actions = {"decide": "view", "decide_many": "view"}

    def scoped_queryset(self) -> QuerySet[ApprovalRequest]:
        return (
            selectors.requests_visible(self.request.user)
            .select_related("bundle_version", "escalated_from")
            .prefetch_related("votes")
        )

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        queryset = super().filter_queryset(queryset)
        if self.request.query_params.get("status") == "pending":
            return queryset.order_by("-risk_rank", "created_at", "id")
        return queryset.order_by("-created_at", "-id")

    def get_queryset(self) -> QuerySet[Any]:
        return super().get_queryset().annotate(risk_rank=selectors.RISK_ORDER)

    @extend_schema(responses={200: s.ApprovalOutput(many=True), **ERRORS})
    def list(self, request: Request) -> Response:
        """Requests; ``status=pending`` lists the waiting ones critical first, oldest first."""
        return self.paginated(self.filter_queryset(self.get_queryset()), s.ApprovalOutput)

    @extend_schema(responses={200: s.ApprovalOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.ApprovalOutput(self.get_object()).data)

    @extend_schema(
        summary="Approve or reject an approval request",
        request=s.DecideInput,
        responses={200: s.ApprovalOutput, 409: s.AlreadyDecidedOutput, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def decide(self, request: Request, pk: str) -> Response:
        """Approve or reject (a reject needs a comment). Critical requests need two different
        approvers: the first approval answers with ``approvals: 1`` and status ``pending``.
        409 when it was decided meanwhile (``detail`` names who and when), expired or
        cancelled, or you already approved it. 403 when you are not one of its queue's
        approvers or asked for the call yourself."""
        target = self.get_object()
        if not services.may_decide(request.user, target.queue):
            # before the body: who may not decide learns that, whatever they sent
            raise PermissionDenied(f"You are not an approver of the queue {target.queue.name}.")
        data = self.validated(s.DecideInput)
        try:
            decided = services.approval_decide(
                actor=request.user,
                request=target,
                choice=data["decision"],
                comment=data.get("comment", ""),
            )
        except services.AlreadyDecided as exc:
            return _already_decided(exc)
        decided = self.get_queryset().get(pk=decided.pk)
        return Response(s.ApprovalOutput(decided).data)

    @extend_schema(
        summary="Decide several low-risk approval requests at once",
        # its own id: drf-spectacular names both POST .../decide/ routes v1_approvals_decide_create
        operation_id="v1_approvals_decide_many",
        request=s.BulkDecideInput,
        responses={200: s.BulkDecideOutput, **ERRORS},
    )
    @action(detail=False, methods=["post"], url_path="decide")
    def decide_many(self, request: Request) -> Response:
        """Decide several low-risk requests at once; each one refused (not low risk, decided
        meanwhile, not your queue, not visible) is listed with why, the others are decided."""
        if not user_may(request.user, services.DECIDE):
            raise PermissionDenied("Your role does not decide approval requests.")
        data = self.validated(s.BulkDecideInput)
        found = {r.pk: r for r in self.get_queryset().filter(pk__in=data["ids"])}
        result = services.approval_decide_bulk(
            actor=request.user,
            requests=[found[pk] for pk in dict.fromkeys(data["ids"]) if pk in found],
            choice=data["decision"],
            comment=data.get("comment", ""),
        )
        refused = {str(pk): message for pk, message in result.refused.items()}
        for pk in data["ids"]:
            if pk not in found:
                refused[str(pk)] = "Not found (or not visible to you)."
        return Response({"decided": result.decided, "refused": refused})


class ApprovalQueueViewSet(ScopedViewSet):
    """Approval queues of your tenants: routing rules, timeout, SLA, escalation, the limit of
    open requests per session, and approvers (usernames). Changes carry the ``version`` you
    read (``expected_version`` or ``If-Match``)."""

    permission_model = ApprovalQueue

    def scoped_queryset(self) -> QuerySet[ApprovalQueue]:
        return selectors.queues_visible(self.request.user).prefetch_related("approvers__user_set")

    @extend_schema(responses={200: s.QueueOutput(many=True), **ERRORS})
    def list(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), s.QueueOutput)

    @extend_schema(responses={200: s.QueueOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        queue = self.get_object()
        return Response(s.QueueOutput(queue).data, headers={"ETag": f'"{queue.version}"'})

    def _definition(self, tenant: Tenant, data: dict[str, Any]) -> dict[str, Any]:
        """The service's input: ``escalate_to`` by name, ``approvers`` by username (names
        that match no user who may decide in ``tenant`` are field errors reported beside the
        service's own)."""
        errors: dict[str, list[str]] = {}
        resolved = s.defined(data, QUEUE_FIELDS)
        name = resolved.get("escalate_to")
        if name:
            found = ApprovalQueue.objects.filter(tenant=tenant, name__iexact=name).first()
            if found is None:
                errors["escalate_to"] = [f"No queue {name!r} in this tenant."]
            resolved["escalate_to"] = found
        else:
            resolved["escalate_to"] = None
        if "approvers" in resolved:
            names = list(dict.fromkeys(resolved["approvers"]))
            users = list(get_user_model().objects.filter(username__in=names))
            by_name = {user.get_username(): user for user in users}
            # An unknown name and another tenant's user get the same answer (no enumeration).
            refused = [
                username
                for username in names
                if username not in by_name
                or not services.may_be_approver(by_name[username], tenant)
            ]
            if refused:
                errors["approvers"] = [services.approvers_refused(refused)]
            resolved["approvers"] = users
        if errors:
            try:
                services.queue_validate(tenant=tenant, data=resolved)
            except DjangoValidationError as exc:
                errors = {**exc.message_dict, **errors}
            raise DjangoValidationError(errors)
        return resolved

    @extend_schema(request=s.QueueCreateInput, responses={201: s.QueueOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        data = self.validated(s.QueueCreateInput)
        tenant = tenant_get_for_user(user=request.user, pk=data.pop("tenant"))
        queue = services.queue_create(
            actor=request.user,
            tenant=tenant,
            data=self._definition(tenant, data),
            reason=data.get("reason", ""),
        )
        return Response(
            s.QueueOutput(queue).data,
            status=status.HTTP_201_CREATED,
            headers={"ETag": f'"{queue.version}"'},
        )

    def _change(self, request: Request, *, partial: bool) -> Response:
        queue = self.get_object()
        serializer = s.QueueInput(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data: dict[str, Any] = dict(serializer.validated_data)
        seen = expected_version(request, data)
        if partial:
            current = {
                **queue.snapshot(),
                "approvers": [u.get_username() for u in services.queue_approvers(queue)],
            }
            data = {**current, **data}
        updated = services.queue_update(
            actor=request.user,
            queue=queue,
            data=self._definition(queue.tenant, data),
            expected_version=seen,
            reason=data.get("reason", ""),
        )
        return Response(s.QueueOutput(updated).data, headers={"ETag": f'"{updated.version}"'})

    @extend_schema(
        request=s.QueueInput,
        parameters=[IF_MATCH],
        responses={200: s.QueueOutput, 409: ConflictSerializer, **ERRORS},
    )
    def update(self, request: Request, pk: str) -> Response:
        return self._change(request, partial=False)

    @extend_schema(
        request=s.QueueInput,
        parameters=[IF_MATCH],
        responses={200: s.QueueOutput, 409: ConflictSerializer, **ERRORS},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        return self._change(request, partial=True)

    @extend_schema(responses={204: None, 409: ErrorSerializer, **ERRORS})
    def destroy(self, request: Request, pk: str) -> Response:
        """Delete a queue no request was ever routed to (409 otherwise, saying why)."""
        queue = self.get_object()
        try:
            services.queue_delete(actor=request.user, queue=queue)
        except services.QueueInUse as exc:
            return Response({"detail": str(exc), "errors": {}}, status=409)
        return Response(status=status.HTTP_204_NO_CONTENT)
