"""Runtime tokens for the runtime-facing Django endpoints (heartbeat, records, SDK register
and metrics). ``request.auth`` is the RuntimeToken; ``request.user`` stays anonymous, so a
runtime token never grants what a person can do. (People's API tokens: ``token_auth``.)"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from ..models import RuntimeToken
from ..runtime_tokens import runtime_token_authenticate, runtime_token_from_header


class RuntimeTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[AnonymousUser, RuntimeToken] | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        token = runtime_token_authenticate(runtime_token_from_header(header))
        if token is None:
            raise AuthenticationFailed(
                "A valid runtime token is required in the Authorization header."
            )
        return AnonymousUser(), token

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class HasRuntimeToken(BasePermission):
    message = "A valid runtime token is required in the Authorization header."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, RuntimeToken)


class RuntimeTokenAPIView(APIView):
    """An API view that runtimes call: runtime-token authentication, and only requests that
    carry a valid runtime token (401 otherwise). ``runtime_token(request)`` is the token."""

    authentication_classes = [RuntimeTokenAuthentication]
    permission_classes = [HasRuntimeToken]

    @staticmethod
    def runtime_token(request: Request) -> RuntimeToken:
        """The request's runtime token (``HasRuntimeToken`` admitted only requests with one)."""
        token = request.auth
        assert isinstance(token, RuntimeToken)
        return token


class RuntimeTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes runtime-token authentication (registered on import)."""

    target_class = RuntimeTokenAuthentication
    name = "runtimeToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A runtime token, bare (as Unleash SDKs send it) or `Bearer <token>`.",
        }


class RefusingSessionScheme(OpenApiAuthenticationExtension):
    """The session cookie, described as drf-spectacular describes DRF's own session
    authentication (the class refuses a session whose password must change first)."""

    target_class = "apps.accounts.api.token_auth.SessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
