"""What every API view shares: one error shape and the scoped-queryset rule.

Errors always look like ``{"detail": "...", "errors": {"field": ["..."]}}``."""

from __future__ import annotations

import inspect
from typing import Any

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, QuerySet
from django.http import Http404
from django.utils.cache import add_never_cache_headers
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import get_doc
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers, viewsets
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from . import authz
from .concurrency import DeletedMeanwhile, StaleVersion
from .errors import too_large_detail
from .fastpath.conditional import parse_entity_tags
from .input_guards import PayloadTooLarge
from .refusals import GateNotMet


def _as_field_errors(detail: Any, path: str | None = None) -> dict[str, list[Any]]:
    """DRF's error detail as ``{path: [message, …]}``, one flat level: a nested serializer's
    errors are named by their path (``bucket.start``, ``strategies[0].constraints``), its
    ``non_field_errors`` by the nested field itself (``bucket``). ``path`` None: the top."""
    here = "non_field_errors" if path is None else path
    if isinstance(detail, dict):
        flat: dict[str, list[Any]] = {}
        for key, value in detail.items():
            key = str(key)
            if key in ("non_field_errors", "__all__"):
                inner = here
            elif key.isdigit() and path is not None:
                inner = f"{path}[{key}]"
            else:
                inner = f"{path}.{key}" if path else key
            for name, messages in _as_field_errors(value, inner).items():
                flat.setdefault(name, []).extend(messages)
        return flat
    if isinstance(detail, list):
        if not any(isinstance(item, dict | list) for item in detail):
            return {here: list(detail)}
        flat = {}
        for index, item in enumerate(detail):
            if not item:
                continue  # DRF's ListSerializer: {} for an item without errors
            name = f"{path or ''}[{index}]" if isinstance(item, dict | list) else here
            for key, messages in _as_field_errors(item, name).items():
                flat.setdefault(key, []).extend(messages)
        return flat
    return {here: [detail]}


def django_validation_error_to_drf(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "error_dict"):
        return exceptions.ValidationError({k: list(v) for k, v in exc.message_dict.items()})
    return exceptions.ValidationError({"non_field_errors": list(exc.messages)})


def _render_as_json(request: Request | None) -> None:
    """An error under /api/ is JSON whatever the view's renderers (the Swagger and schema
    views render HTML and YAML) and whatever the client's ``Accept`` header (issue 8, kind 10):
    DRF renders the response with the renderer it stores on the request."""
    if request is not None:
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler in the API's one error shape, always rendered as JSON; a stale version
    is a 409 with what the client needs to re-read (docs/decisions/0007); a promotion gate's
    refusal a 422 with the gate's lines (``GateNotMet``)."""
    if isinstance(exc, StaleVersion):
        # Optimistic concurrency: the client acted on a version that moved on. 409, with
        # what it needs to re-read and decide again (docs/decisions/0007).
        message = exc.messages[0]
        conflict = Response(
            {
                "detail": message,
                "errors": {"expected_version": [message]},
                "current_version": exc.current_version,
                "changed_by": exc.changed_by or None,
                "changed_at": exc.changed_at.isoformat() if exc.changed_at else None,
            },
            status=409,
        )
        _render_as_json(context.get("request"))
        return conflict
    if isinstance(exc, DeletedMeanwhile):
        # Same 409 shape: what the client acted on is gone, and who removed it.
        message = exc.messages[0]
        gone = Response(
            {
                "detail": message,
                "errors": {},
                "current_version": None,
                "changed_by": exc.changed_by or None,
                "changed_at": exc.changed_at.isoformat() if exc.changed_at else None,
            },
            status=409,
        )
        _render_as_json(context.get("request"))
        return gone
    if isinstance(exc, GateNotMet):
        # A policy refusal, not bad input: 422 with the per-suite lines (docs/releases.md).
        refused = Response(
            {"detail": exc.summary, "errors": {exc.field: exc.lines}, "gate": exc.gate},
            status=422,
        )
        _render_as_json(context.get("request"))
        return refused
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(too_large_detail())
    elif isinstance(exc, DjangoValidationError):
        exc = django_validation_error_to_drf(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    _render_as_json(context.get("request"))
    if isinstance(exc, exceptions.ValidationError):
        errors = _as_field_errors(response.data)
        response.data = {"detail": "Invalid input: see errors by field.", "errors": errors}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": response.data["detail"], "errors": {}}
    return response


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(
        allow_blank=False,
        max_length=2000,
        help_text="Why: kept in the audit log. Required for destructive actions.",
    )


class OptionalReasonMixin(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class ExpectedVersionMixin(serializers.Serializer):
    """``expected_version``: the ``version`` the client read; optional on the API (absent:
    the change applies to whatever is current, as before). ``If-Match: "<version>"`` says
    the same. A mismatch answers 409 (``ConflictSerializer``)."""

    expected_version = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text="The `version` you read. If it moved on since, nothing changes and the "
        'answer is 409 naming who changed it and when. Same as `If-Match: "<version>"`.',
    )


# The header of every change of "the current X" (with ExpectedVersionMixin's body field), for
# the schema; a stale one answers 409 (ConflictSerializer), one naming no version 412.
IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description='The `version` you read, quoted: `"3"`. Same as `expected_version`. '
    'Compared strongly (RFC 9110): a weak tag (`W/"3"`) never matches and is a 412.',
)


class PreconditionFailed(exceptions.APIException):
    """``If-Match`` names no tag that can match (RFC 9110 13.1.1: 412)."""

    status_code = 412
    default_detail = "If-Match matches no version of this object."
    default_code = "precondition_failed"


def expected_version(request: Any, data: dict[str, Any]) -> int | None:
    """The version a request says it acted on: the body's ``expected_version``, else the
    version named by ``If-Match`` (RFC 9110 13.1.1), compared as a version is, i.e. strongly.

    ``*`` or no header is None (no check). A list whose strong tags name one version gives
    that version (``"3"``, ``"3", W/"3"``). Weak tags never match under the strong comparison
    ``If-Match`` requires (``W/"3"`` is what a compressing proxy makes of ``"3"``; send the
    version as ``expected_version`` instead), nor do tags that are no version (``"abc"``), so
    a header naming no version is a 412 before anything changes. Raises a 400
    ``ValidationError`` for a header that is no entity-tag list, for a list naming several
    versions (one change acts on one version; no client sends such a list) and for one
    that disagrees with the body."""
    body = data.pop("expected_version", None)
    header = (request.headers.get("If-Match") or "").strip()
    if not header or header == "*":
        return body
    tags = parse_entity_tags(header)
    if tags is None:
        raise exceptions.ValidationError(
            {"If-Match": ['One version in quotes, e.g. If-Match: "3" (the "version" you read).']}
        )
    versions = {
        int(opaque)
        for weak, opaque in tags
        if not weak and opaque.isascii() and opaque.isdigit() and len(opaque) <= 10
    }
    if not versions:
        weak = any(weak for weak, _ in tags)
        raise PreconditionFailed(
            'If-Match compares entity tags strongly (RFC 9110 13.1.1): a weak tag (W/"3") '
            'never matches; send the version you read as "3" or as expected_version.'
            if weak
            else 'If-Match names no version of this object; send the version you read as "3".'
        )
    if len(versions) > 1:
        raise exceptions.ValidationError(
            {"If-Match": ["Name one version: a change acts on the version you read."]}
        )
    (version,) = versions
    if body is not None and body != version:
        raise exceptions.ValidationError(
            {"expected_version": ["Disagrees with If-Match: send one or make them equal."]}
        )
    return version


class NullMeansAbsentMixin:
    """For input a client may send from a language where "absent" is spelled ``null``: an
    optional field sent as ``null`` counts as not sent (its default applies) instead of
    refusing the whole request, where that is the plain meaning (issue 8, kind 2: be liberal
    where the data is unambiguous). Required fields and fields that take ``null`` themselves
    are unaffected; anything else that is wrong is still a 400 naming the field."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            fields = self.fields  # type: ignore[attr-defined]
            data = {
                key: value
                for key, value in data.items()
                if not (
                    value is None
                    and key in fields
                    and not fields[key].required
                    and not fields[key].allow_null
                )
            }
        return super().to_internal_value(data)  # type: ignore[misc]


class ConflictSerializer(serializers.Serializer):
    """The 409 answer to a stale ``expected_version`` / ``If-Match`` (schema only)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "detail": serializers.CharField(),
            "errors": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField())
            ),
            "current_version": serializers.IntegerField(allow_null=True),
            "changed_by": serializers.CharField(allow_null=True),
            "changed_at": serializers.DateTimeField(allow_null=True),
        }


class ErrorSerializer(serializers.Serializer):
    """The error shape, for the schema only. Its fields are built in ``get_fields`` because a
    field named ``errors`` declared on the class would hide ``Serializer.errors``."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "detail": serializers.CharField(),
            "errors": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField())
            ),
        }


# What each HTTP method asks of the role (NetBox's and DRF's DjangoModelPermissions mapping,
# with reads needing the view permission too): a POST on a collection adds, a POST on one
# object (an action such as archive, toggle, release) changes it.
METHOD_ACTIONS = {
    "GET": authz.VIEW,
    "HEAD": authz.VIEW,
    "OPTIONS": authz.VIEW,
    "POST": authz.ADD,
    "PUT": authz.CHANGE,
    "PATCH": authz.CHANGE,
    "DELETE": authz.DELETE,
}


def permission_action(request: Request, view: Any) -> str:
    """The action (``view``, ``add``, ``change``, ``delete`` or custom) a request asks of the
    user's role: ``view.permission_actions[view.action]`` when the view names one, else by
    method, a POST on one object (``detail=True``) being a change."""
    named = getattr(view, "permission_actions", {}).get(getattr(view, "action", None))
    if named:
        return str(named)
    action = METHOD_ACTIONS.get(request.method or "GET", authz.CHANGE)
    if action == authz.ADD and getattr(view, "detail", False):
        return authz.CHANGE
    return action


class HasModelPermission(BasePermission):
    """The role must grant ``<app>.<action>_<model>`` for the request's action (reads need
    the view permission): 403 otherwise, before any object is looked up, so the answer says
    nothing about which objects exist. The model is ``view.permission_model`` or the model of
    the view's queryset; the action comes from ``permission_action``. Which objects are in
    scope is the queryset's business (``ScopedViewSet.get_queryset`` → ``restrict``: 404)."""

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        permission = view_permission(request, view)
        if authz.user_may(user, permission):
            return True
        self.message = getattr(view, "permission_denied_message", "") or (
            f"Your role does not allow this ({permission})."
        )
        return False


def view_permission(request: Request, view: Any) -> str:
    """The permission name a request to ``view`` needs (see ``HasModelPermission``)."""
    model = getattr(view, "permission_model", None) or view.get_queryset().model
    return authz.permission_name(model, permission_action(request, view))


class ScopedViewSet(viewsets.GenericViewSet):
    """Base for operator API views. Permissions by default: the role's model permission for
    the request's action (``HasModelPermission``: 403), and the objects only of the user's
    tenants (``restrict``: 404 for another tenant's). The queryset comes only from
    ``scoped_queryset()`` (a selector taking ``user`` and ``action``), and ``get_queryset``
    runs it through ``restrict`` again, so a new endpoint cannot forget the scope.

    A subclass sets ``permission_model`` when it acts on one model by another's permission
    (a promotion gate is reached through its environment), ``permission_actions`` to name a
    custom action's permission (``{"approve": "approve"}``), and ``permission_denied_message``
    for a clearer 403. A new app's model needs no code: its tenant scope is found by
    convention (``apps.core.authz.tenant_scope``)."""

    lookup_value_regex = r"[0-9]+"
    permission_classes = [HasModelPermission]
    permission_model: type[Model] | None = None
    permission_actions: dict[str, str] = {}
    permission_denied_message = ""

    @property
    def permission_action(self) -> str:
        """What this request asks of the role: ``view``, ``add``, ``change``, ``delete``…"""
        return permission_action(self.request, self)

    def scoped_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet[Any]:
        queryset = self.scoped_queryset()
        if self.permission_model in (None, queryset.model):
            return authz.restrict(queryset, self.request.user, self.permission_action)
        # acting on this model by another's permission (checked by HasModelPermission): the
        # rows still need to be the user's to see
        return authz.restrict(queryset, self.request.user, authz.VIEW)

    def get_object(self) -> Any:
        try:
            return self.get_queryset().get(pk=int(self.kwargs["pk"]))
        except (ObjectDoesNotExist, ValueError):
            raise exceptions.NotFound("Not found.") from None

    def validated(
        self, serializer_class: type[serializers.Serializer], data: Any | None = None
    ) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data if data is None else data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def paginated(self, queryset: QuerySet[Any], output: type[serializers.Serializer]) -> Response:
        page = self.paginate_queryset(queryset)
        if page is not None:
            return self.get_paginated_response(output(page, many=True).data)
        return Response(output(queryset, many=True).data)


# ------------------------------------------------------------------ the error shape, everywhere

# Statuses any operation can answer in the error shape: bad input or query (400), no or a bad
# credential (401), not allowed (403), not found or another tenant's (404, also a page past the
# end); a body over the size limit (413) where the operation takes one; the database lost for
# a moment (503, with Retry-After: a change it interrupted was rolled back whole).
_ERROR_STATUSES = {
    "400": "Invalid input or query: see `errors` by field.",
    "401": "No credential, or one that is not valid.",
    "403": "Not allowed for this user or token.",
    "404": "Not found (or not visible to you).",
    "503": "The database is unavailable for a moment (a restart or failover): try again after "
    "the `Retry-After` seconds.",
}
_BODY_ERROR_STATUSES = {"413": "The request body is over the size limit."}
_RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before sending the request again.",
    "schema": {"type": "integer", "minimum": 1},
}


def document_error_responses(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation documents the error statuses it
    can answer, in the one error shape, so clients (and the fuzzer) know them. Statuses a view
    documents itself are left as they are."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(
        "Error",
        {
            "type": "object",
            "properties": {
                "detail": {"type": "string"},
                "errors": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "required": ["detail", "errors"],
        },
    )
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            statuses = dict(_ERROR_STATUSES)
            if method in {"post", "put", "patch"}:
                statuses.update(_BODY_ERROR_STATUSES)
            if "409" in operation["responses"]:  # takes expected_version / If-Match
                statuses["412"] = "`If-Match` names no version that could match (RFC 9110)."
            for code, description in statuses.items():
                response: dict[str, Any] = {"description": description, "content": body}
                if code == "503":
                    response["headers"] = {"Retry-After": _RETRY_AFTER_HEADER}
                operation["responses"].setdefault(code, response)
    return result


# Summaries of the standard actions of a ``ScopedViewSet``, from its ``permission_model``'s
# names; an action's own ``@extend_schema(summary=...)`` wins.
_STANDARD_SUMMARIES = {
    "list": "List {plural}",
    "create": "Create {a} {name}",
    "retrieve": "Read {a} {name}",
    "update": "Replace {a} {name}",
    "partial_update": "Change {a} {name}",
    "destroy": "Delete {a} {name}",
}
# Where a docstring is written for the people who extend the code, not those who call the API
# (``ScopedViewSet`` explains scoping rules): never shown as an operation's description.
_INTERNAL_MODULES = ("builtins", "apps.core.", "rest_framework.", "drf_spectacular.", "django.")


def _user_facing_doc(view_class: type) -> str:
    """The docstring of the view class, or of the nearest base class written for the API's
    users (an app's own base such as ``_AgentScoped``); "" when there is none."""
    for klass in view_class.__mro__:
        doc = klass.__dict__.get("__doc__")
        if doc and not klass.__module__.startswith(_INTERNAL_MODULES):
            return "\n".join(line.rstrip() for line in inspect.cleandoc(doc).splitlines())
    return ""


def _plural(name: str) -> str:
    # Django's default verbose_name_plural only adds "s" ("kill switchs").
    return name + ("es" if name.endswith(("s", "x", "ch", "sh")) else "s")


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema generator, with what our serializers answer made explicit
    (settings.REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]) and every operation described for the
    people who call it:

    * the description is the action's docstring, else the view's own (never a kernel or
      framework base class's: those are written for developers);
    * the summary of a standard action (list, create, retrieve, update, partial update,
      destroy) says what it does to which thing (``permission_model``'s names), unless the
      action sets its own;
    * the tag of an operator API operation (``/api/v1/``) is the label of the app its view
      belongs to (``tenancy``, ``flags``…; described in ``SPECTACULAR_SETTINGS["TAGS"]``);

    * a read-only field with ``default=None`` (``source="agent.slug"`` of an optional agent)
      answers null, so it is ``nullable``;
    * a read-only email or URL field (``User.email``) may answer "", which ``format: email``
      refuses, so it documents no format (inputs that may be blank get a ``oneOf`` already)."""

    def get_description(self) -> str:  # type: ignore[override]
        action = getattr(self.view, getattr(self.view, "action", None) or self.method.lower(), None)
        return get_doc(action) or _user_facing_doc(type(self.view))

    def get_summary(self) -> str | None:
        template = _STANDARD_SUMMARIES.get(getattr(self.view, "action", None) or "")
        model = getattr(self.view, "permission_model", None)
        if template is None or model is None:
            return None
        name = str(model._meta.verbose_name)
        article = "an" if name[:1] in "aeio" else "a"
        return template.format(a=article, name=name, plural=_plural(name))

    def get_tags(self) -> list[str]:
        if self.path.startswith("/api/v1/"):
            config = apps.get_containing_app_config(type(self.view).__module__)
            if config is not None:
                return [config.label]
        tags: list[str] = super().get_tags()
        return tags

    def _map_serializer_field(
        self, field: Any, direction: Any, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = super()._map_serializer_field(field, direction, bypass_extensions)
        if field.read_only and getattr(field, "default", serializers.empty) is None:
            result["nullable"] = True
        return result

    def _insert_field_validators(self, field: Any, schema: dict[str, Any]) -> None:
        super()._insert_field_validators(field, schema)  # adds the format from the validators
        if field.read_only and isinstance(field, serializers.EmailField | serializers.URLField):
            schema.pop("format", None)


def secret_once(body: Any, *, status: int = 200) -> Response:
    """An answer that carries a secret shown once (a token, a one-time password, a signing
    secret): ``Cache-Control: no-store`` and the rest of Django's never-cache headers, so no
    cache, proxy or browser history keeps a copy (RFC 9111 5.2.2.5)."""
    response = Response(body, status=status)
    add_never_cache_headers(response)
    return response
