"""Bundle versions, their evaluations and promotion gates over the API; the published bundle
schema and the runtime-facing public keys."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ErrorSerializer, ScopedViewSet
from apps.core.input_guards import is_digits
from apps.tenancy.models import Agent, Environment
from apps.tenancy.selectors import (
    agent_get_for_user,
    environment_get_for_user,
    environment_list_for_user,
)

from .. import selectors, services, signing
from ..diff import bundle_diff
from ..exports import export_filename, export_json, export_yaml
from ..models import BundleVersion, Evaluation, PromotionGate
from ..schema import MAX_BUNDLE_BYTES, SCHEMA_PATH, bundle_json_schema
from ..validation import ValidationResult, validate_source
from . import serializers as s
from .filters import PromotionGateListFilter

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
BUNDLE_ERRORS = {
    400: s.BundleErrorSerializer,
    403: ErrorSerializer,
    404: ErrorSerializer,
    415: ErrorSerializer,
}
BUNDLE_BODY = {
    "application/yaml": {"type": "string", "description": "the bundle file, YAML"},
    "application/json": {"type": "object", "description": "the bundle file, JSON"},
}
MESSAGE = OpenApiParameter(
    "message", str, description="why this version exists (or the X-Bundle-Message header)"
)
PARENT = OpenApiParameter(
    "parent", int, description="the version it was made from (default: the latest)"
)

_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def _body_format(request: Request) -> str | None:
    content_type = (request.content_type or "").split(";", 1)[0].strip().lower()
    if content_type in _FORM_TYPES:
        raise exceptions.UnsupportedMediaType(
            content_type,
            "Send the bundle file itself as the body (application/yaml or application/json).",
        )
    if content_type.endswith("json"):
        return "json"
    if "yaml" in content_type:
        return "yaml"
    return None  # text/plain or unset: guessed from the text


def _read_body(request: Request) -> bytes | None:
    """The raw body, or None when it is over the size limit (not read, then)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BUNDLE_BYTES:
        return None
    stream = request.stream
    data = stream.read(MAX_BUNDLE_BYTES + 1) if stream is not None else b""
    return data if len(data) <= MAX_BUNDLE_BYTES else None


def _too_big(request: Request) -> ValidationResult:
    size = request.META.get("CONTENT_LENGTH") or f"over {MAX_BUNDLE_BYTES:,}"
    return ValidationResult(
        errors={
            "": [f"The bundle is {size} bytes; the limit is {MAX_BUNDLE_BYTES:,} bytes (1 MiB)."]
        }
    )


def _refusal(
    errors: dict[str, list[str]],
    warnings: dict[str, list[str]],
    lines: dict[str, int] | None = None,
) -> Response:
    count = sum(len(m) for m in errors.values())
    return Response(
        {
            "detail": f"Refused: {count} error{'s' if count != 1 else ''}. Keys of errors are "
            "JSON pointers into the bundle ('' is the whole file).",
            "errors": errors,
            "warnings": warnings,
            "lines": lines or {},
        },
        status=status.HTTP_400_BAD_REQUEST,
    )


class _AgentScoped(ScopedViewSet):
    """Nested under /agents/{agent_id}/: the agent comes through the tenancy selector, so
    another tenant's agent is a 404 before anything else happens."""

    _agent: Agent | None = None

    def agent(self) -> Agent:
        if self._agent is None:
            self._agent = agent_get_for_user(
                user=self.request.user, pk=int(self.kwargs["agent_id"])
            )
        return self._agent

    def version(self) -> BundleVersion:
        return selectors.bundle_version_get(agent=self.agent(), number=int(self.kwargs["number"]))


class BundleVersionViewSet(_AgentScoped):
    """An agent's bundle versions: immutable, content-addressed, signed."""

    permission_model = BundleVersion

    def scoped_queryset(self) -> QuerySet[BundleVersion]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no agent
            return BundleVersion.objects.none()
        return selectors.bundle_version_list(agent=self.agent())

    @extend_schema(
        summary="List an agent's bundle versions, newest first",
        responses={200: s.BundleVersionOutput(many=True), **ERRORS},
    )
    def list(self, request: Request, agent_id: str) -> Response:
        return self.paginated(self.get_queryset(), s.BundleVersionOutput)

    @extend_schema(
        summary="Push a bundle file as the agent's next version",
        description="The body is the bundle file (YAML or JSON). Identical content returns "
        "the existing version with 200; new content is stored as the next version with 201. "
        "A 400 lists every error by JSON pointer, plus warnings; nothing is stored then.",
        request=BUNDLE_BODY,
        parameters=[MESSAGE, PARENT],
        responses={200: s.PushOutput, 201: s.PushOutput, **BUNDLE_ERRORS},
    )
    def create(self, request: Request, agent_id: str) -> Response:
        agent = self.agent()
        fmt = _body_format(request)
        body = _read_body(request)
        message = request.query_params.get("message") or request.headers.get("X-Bundle-Message", "")
        parent = request.query_params.get("parent")
        if parent is not None and not is_digits(parent, max_digits=9):
            raise exceptions.ValidationError({"parent": ["A version number (1, 2, …)."]})
        if body is None:
            return _refusal(_too_big(request).errors, {})
        try:
            result = services.bundle_version_push(
                actor=request.user,
                agent=agent,
                source=body,
                source_format=fmt,
                message=message,
                parent_number=int(parent) if parent else None,
            )
        except services.BundleInvalid as exc:
            return _refusal(exc.errors_by_pointer, exc.result.warnings, exc.result.lines)
        data = s.PushOutput(result.version, context={"created": result.created}).data
        return Response(
            data, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )

    @extend_schema(
        summary="One version: content, digest, signature and gate status per environment",
        responses={200: s.BundleVersionDetailOutput, **ERRORS},
    )
    def retrieve(self, request: Request, agent_id: str, number: str) -> Response:
        version = self.version()
        environments = list(
            environment_list_for_user(user=request.user, tenant=version.agent.tenant)
        )
        gates = selectors.gate_statuses(versions=[version], environments=environments)[version.pk]
        return Response(s.BundleVersionDetailOutput(version, context={"gates": gates}).data)

    @extend_schema(
        summary="Download a version as a YAML bundle file",
        responses={(200, "application/yaml"): OpenApiTypes.STR, **ERRORS},
    )
    def export_yaml(self, request: Request, agent_id: str, number: str) -> HttpResponse:
        version = self.version()
        response = HttpResponse(
            export_yaml(version, schema_url=request.build_absolute_uri(SCHEMA_PATH)),
            content_type="application/yaml; charset=utf-8",
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{export_filename(version, "yaml")}"'
        )
        return response

    @extend_schema(
        summary="Download a version as a JSON bundle file",
        responses={(200, "application/json"): OpenApiTypes.OBJECT, **ERRORS},
    )
    def export_json(self, request: Request, agent_id: str, number: str) -> HttpResponse:
        version = self.version()
        response = HttpResponse(
            export_json(version), content_type="application/json; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{export_filename(version, "json")}"'
        )
        return response

    @extend_schema(
        summary="What changed between two versions",
        parameters=[
            OpenApiParameter("from", int, required=True),
            OpenApiParameter("to", int, required=True),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def diff(self, request: Request, agent_id: str) -> Response:
        agent = self.agent()
        errors = {
            key: ["A version number (1, 2, …)."]
            for key in ("from", "to")
            if not is_digits(request.query_params.get(key) or "", max_digits=9)
        }
        if errors:
            raise exceptions.ValidationError(errors)
        old = selectors.bundle_version_get(agent=agent, number=int(request.query_params["from"]))
        new = selectors.bundle_version_get(agent=agent, number=int(request.query_params["to"]))
        return Response(
            {
                "from": {"number": old.number, "digest": old.digest},
                "to": {"number": new.number, "digest": new.digest},
                "diff": bundle_diff(old.content, new.content).as_dict(),
            }
        )


class EvaluationViewSet(_AgentScoped):
    """Evaluation evidence attached to one bundle version (from CI)."""

    permission_model = Evaluation

    def scoped_queryset(self) -> QuerySet[Evaluation]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no agent
            return Evaluation.objects.none()
        return selectors.evaluation_list(version=self.version()).select_related("version")

    @extend_schema(
        summary="Evaluation results attached to a version",
        responses={200: s.EvaluationOutput(many=True), **ERRORS},
    )
    def list(self, request: Request, agent_id: str, number: str) -> Response:
        return self.paginated(self.get_queryset(), s.EvaluationOutput)

    @extend_schema(
        summary="Attach one suite's results (from CI) to a version",
        description="Posting the same run_id again returns the stored result with 200.",
        request=s.EvaluationInput,
        responses={200: s.EvaluationOutput, 201: s.EvaluationOutput, **ERRORS},
        examples=[
            OpenApiExample(
                "golden suite",
                request_only=True,
                value={
                    "suite": "golden",
                    "passed": 97,
                    "failed": 3,
                    "score": 0.97,
                    "report_url": "https://ci.example.com/runs/123",
                    "run_id": "123",
                },
            )
        ],
    )
    def create(self, request: Request, agent_id: str, number: str) -> Response:
        version = self.version()
        evaluation, created = services.evaluation_record(
            actor=request.user, version=version, **self.validated(s.EvaluationInput)
        )
        return Response(
            s.EvaluationOutput(evaluation).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class PromotionGateViewSet(ScopedViewSet):
    """Per environment: the evaluation suites and pass rates a version needs to be promoted."""

    # environments, by the promotion gate permissions (reads view, PUT change)
    permission_model = PromotionGate
    filterset_class = PromotionGateListFilter

    def scoped_queryset(self) -> QuerySet[Environment]:
        return environment_list_for_user(user=self.request.user)

    def environment(self) -> Environment:
        return environment_get_for_user(
            user=self.request.user, pk=int(self.kwargs["environment_id"])
        )

    @extend_schema(
        summary="Promotion gates of every environment you can see",
        responses={200: s.PromotionGateOutput(many=True)},
    )
    def list(self, request: Request) -> Response:
        environments = self.filter_queryset(self.get_queryset())
        rows: Any = selectors.promotion_gate_rows_of(environments=environments)
        page = self.paginate_queryset(rows)  # a list paginates like a queryset
        if page is not None:
            return self.get_paginated_response(s.PromotionGateOutput(page, many=True).data)
        return Response(s.PromotionGateOutput(rows, many=True).data)

    @extend_schema(
        summary="An environment's promotion gate", responses={200: s.PromotionGateOutput, **ERRORS}
    )
    def retrieve(self, request: Request, environment_id: str) -> Response:
        return Response(
            s.PromotionGateOutput(selectors.promotion_gate_row(environment=self.environment())).data
        )

    @extend_schema(
        summary="Replace an environment's promotion gate",
        description="An empty list removes every requirement. Loosening a gate (dropping a "
        "suite or lowering a minimum) needs a reason.",
        request=s.PromotionGateInput,
        responses={200: s.PromotionGateOutput, **ERRORS},
    )
    def update(self, request: Request, environment_id: str) -> Response:
        environment = self.environment()
        data = self.validated(s.PromotionGateInput)
        services.promotion_gate_set(
            actor=request.user,
            environment=environment,
            requirements=[dict(r) for r in data["requirements"]],
            reason=data["reason"],
        )
        return Response(
            s.PromotionGateOutput(selectors.promotion_gate_row(environment=environment)).data
        )


class BundleValidateView(APIView):
    @extend_schema(
        summary="Validate a bundle file without storing it (for CI)",
        request=BUNDLE_BODY,
        responses={200: s.ValidateOutput, **BUNDLE_ERRORS},
    )
    def post(self, request: Request) -> Response:
        """The body is a bundle file (YAML or JSON): checked as a push would check it, stored
        nowhere. 200 with its digest and warnings when a push would take it; 400 with the
        errors keyed by JSON pointer (and the line of each) when a push would refuse it."""
        fmt = _body_format(request)
        body = _read_body(request)
        result = _too_big(request) if body is None else validate_source(body, source_format=fmt)
        if not result.ok:
            return _refusal(result.errors, result.warnings, result.lines)
        return Response(result.as_dict())


class BundleSchemaView(APIView):
    """The bundle format as JSON Schema (draft 2020-12), for editors. No login needed."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="The bundle file format as JSON Schema",
        responses={200: OpenApiTypes.OBJECT},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        return Response(bundle_json_schema(schema_id=request.build_absolute_uri(SCHEMA_PATH)))


class RuntimeKeysView(APIView):
    """Public keys that verify bundle and snapshot signatures; retired keys included. The list
    sits under ``keys`` so the document can grow without changing shape (runtime API v1)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Public keys runtimes verify signatures with",
        responses={200: OpenApiResponse(s.SigningKeysOutput)},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        response = Response({"keys": s.SigningKeyOutput(signing.public_keys(), many=True).data})
        response["Cache-Control"] = "public, max-age=60"
        return response
