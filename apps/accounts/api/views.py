from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import (
    APIException,
    AuthenticationFailed,
    PermissionDenied,
    ValidationError,
)
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import (
    IF_MATCH,
    ConflictSerializer,
    ErrorSerializer,
    ReasonSerializer,
    ScopedViewSet,
    expected_version,
    secret_once,
)
from apps.core.roles import Role
from apps.tenancy.selectors import (
    agent_get_for_user,
    environment_get_for_user,
    tenant_get_for_user,
    tenant_list_for_user,
)

from .. import selectors, services
from ..lockout import login_lockout_message
from ..models import RuntimeToken
from ..passwords import password_change_required, password_reset
from ..runtime_tokens import runtime_token_create, runtime_token_revoke
from . import serializers as s
from .filters import RuntimeTokenListFilter
from .login_throttle import LoginRateThrottle

ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}


class UserViewSet(ScopedViewSet):
    """Users and their roles and tenant grants (Admins only)."""

    # users are no tenant's (auth.User is registered unscoped): the role alone decides, and
    # only the Admin role has the auth.*_user permissions
    permission_model = User
    permission_denied_message = "Only Admins manage users and roles."

    def scoped_queryset(self) -> QuerySet[User]:
        return selectors.user_list()

    @extend_schema(responses={200: s.UserOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.get_queryset(), s.UserOutput)

    @extend_schema(responses={200: s.UserOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One user; its ``ETag`` is its ``version``, ready for ``If-Match`` on a change."""
        body = s.UserOutput(self.get_object()).data
        return Response(body, headers={"ETag": f'"{body["version"]}"'})

    @extend_schema(request=s.UserCreateInput, responses={201: s.UserCreatedOutput, **ERRORS})
    def create(self, request: Request) -> Response:
        data: dict[str, Any] = self.validated(s.UserCreateInput)
        # every id scoped before anything is created: one the Admin cannot see is a field
        # error, and no user is made
        wanted = set(data.pop("tenants"))
        tenants = list(tenant_list_for_user(user=request.user).filter(pk__in=wanted))
        unknown = sorted(wanted - {t.pk for t in tenants})
        if unknown:
            raise ValidationError({"tenants": [f"No such tenant: {', '.join(map(str, unknown))}."]})
        user, password = services.user_create(
            actor=request.user, role=Role(data.pop("role")), tenants=tenants, **data
        )
        body = dict(s.UserOutput(user).data, initial_password=password)
        return secret_once(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.UserUpdateInput,
        parameters=[IF_MATCH],
        responses={200: s.UserOutput, **ERRORS, 409: ConflictSerializer},
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        """Change email, role or active flag; 409 if ``expected_version``/``If-Match`` is
        stale (someone changed the user, its role or its tenant grants since)."""
        data: dict[str, Any] = self.validated(s.UserUpdateInput)
        data["expected_version"] = expected_version(request, data)
        if "role" in data:
            data["role"] = Role(data["role"])
        user = services.user_update(actor=request.user, user=self.get_object(), **data)
        body = s.UserOutput(user).data
        return Response(body, headers={"ETag": f'"{body["version"]}"'})

    @extend_schema(
        summary="Grant a user access to a tenant",
        request=s.TenantGrantInput,
        responses={204: None, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="grant-tenant")
    def grant_tenant(self, request: Request, pk: str) -> Response:
        """Let the user see and act on one tenant's objects, as far as the user's role allows.
        Granting a tenant the user already has changes nothing."""
        data = self.validated(s.TenantGrantInput)
        tenant = tenant_get_for_user(user=request.user, pk=data["tenant"])
        services.user_grant_tenant(
            actor=request.user, user=self.get_object(), tenant=tenant, reason=data["reason"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Revoke a user's access to a tenant",
        request=s.TenantGrantInput,
        responses={204: None, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="revoke-tenant")
    def revoke_tenant(self, request: Request, pk: str) -> Response:
        """Take one tenant away from the user: its objects answer 404 to the user from then on."""
        data = self.validated(s.TenantGrantInput)
        tenant = tenant_get_for_user(user=request.user, pk=data["tenant"])
        services.user_revoke_tenant(
            actor=request.user, user=self.get_object(), tenant=tenant, reason=data["reason"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Reset a user's password to a one-time password",
        request=ReasonSerializer,
        responses={200: s.PasswordResetOutput, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="reset-password")
    def reset_password(self, request: Request, pk: str) -> Response:
        """Give the user a new one-time password (returned once): their browser sessions
        end and their next login must change it; their API token keeps working. Audited
        with the reason, never the password."""
        data = self.validated(ReasonSerializer)
        password = password_reset(actor=request.user, user=self.get_object(), reason=data["reason"])
        return secret_once({"one_time_password": password})


class LoginLockedOut(APIException):
    status_code = 429
    default_code = "locked_out"


class TokenObtainView(APIView):
    """Exchange a username and password for an API token for scripts
    (send it as ``Authorization: Token <key>``). Issuing replaces the previous token.
    Throttled per client address (429); a username locked out after repeated wrong passwords
    from this address is refused with 429 even with the right password. A password someone
    else chose (an initial or one-time password) is refused with 403 until the user has
    changed it: it must not become a lasting credential the user never chose."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]

    @extend_schema(
        summary="Exchange a username and password for an API token",
        request=s.TokenObtainInput,
        responses={
            200: s.TokenOutput,
            400: ErrorSerializer,
            401: ErrorSerializer,
            403: ErrorSerializer,
            429: ErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = s.TokenObtainInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(
            request._request,
            username=serializer.validated_data["username"],
            password=serializer.validated_data["password"],
        )
        if getattr(request._request, "axes_locked_out", False):
            raise LoginLockedOut(login_lockout_message())
        if user is None or not user.is_active:
            raise AuthenticationFailed("Wrong username or password.")
        if password_change_required(user):
            raise PermissionDenied(
                "Change your password first: this is an initial or one-time password. Log in "
                "on the web page, choose your own password, then ask for a token with it."
            )
        return secret_once({"token": services.api_token_rotate(actor=user, user=user)})

    def get_authenticate_header(self, request: Request) -> str:
        # No authentication classes here, so DRF would turn a wrong password into a 403;
        # a failed login is a 401.
        return "Token"


class MeView(APIView):
    @extend_schema(summary="The signed-in user", responses={200: s.UserOutput})
    def get(self, request: Request) -> Response:
        """You, as the API sees you: username, email, role and the version to send with a
        change."""
        return Response(s.UserOutput(request.user).data)


class RuntimeTokenViewSet(ScopedViewSet):
    """Runtime tokens: how data-plane runtimes authenticate (``Authorization: <token>`` or
    ``Authorization: Bearer <token>``). The raw token is returned once, at creation."""

    permission_model = RuntimeToken
    filterset_class = RuntimeTokenListFilter

    def scoped_queryset(self) -> QuerySet[RuntimeToken]:
        return selectors.runtime_token_list_for_user(
            user=self.request.user, action=self.permission_action
        )

    @extend_schema(responses={200: s.RuntimeTokenOutput(many=True)})
    def list(self, request: Request) -> Response:
        return self.paginated(self.filter_queryset(self.get_queryset()), s.RuntimeTokenOutput)

    @extend_schema(responses={200: s.RuntimeTokenOutput, **ERRORS})
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(s.RuntimeTokenOutput(self.get_object()).data)

    @extend_schema(
        request=s.RuntimeTokenCreateInput, responses={201: s.RuntimeTokenCreatedOutput, **ERRORS}
    )
    def create(self, request: Request) -> Response:
        data: dict[str, Any] = self.validated(s.RuntimeTokenCreateInput)
        environment = environment_get_for_user(user=request.user, pk=data.pop("environment"))
        agent_id = data.pop("agent")
        agent = agent_get_for_user(user=request.user, pk=agent_id) if agent_id else None
        token, raw = runtime_token_create(
            actor=request.user,
            tenant=environment.tenant,
            environment=environment,
            agent=agent,
            **data,
        )
        return secret_once(
            dict(s.RuntimeTokenOutput(token).data, token=raw), status=status.HTTP_201_CREATED
        )

    @extend_schema(
        summary="Revoke a runtime token",
        request=ReasonSerializer,
        responses={200: s.RuntimeTokenOutput, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        """Revoke with a reason: runtimes and SDKs using the token get 401 from their next
        request on. A revoked token stays listed (and audited); it cannot be restored."""
        token = runtime_token_revoke(
            actor=request.user, token=self.get_object(), **self.validated(ReasonSerializer)
        )
        return Response(s.RuntimeTokenOutput(token).data)
