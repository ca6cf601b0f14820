"""Runtime tokens for the runtime-facing Django endpoints (heartbeat, records, SDK register
and metrics). ``request.auth`` is the RuntimeToken; ``request.user`` stays anonymous, so a
runtime token never grants what a person can do."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
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
