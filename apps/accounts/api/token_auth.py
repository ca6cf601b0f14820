"""People's API tokens for scripts (``Authorization: Token <key>``), stored hashed.

A module of its own because DRF imports ``DEFAULT_AUTHENTICATION_CLASSES`` while
``rest_framework.views`` is still loading: nothing here may import DRF views or permissions."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import SessionAuthentication as BaseSessionAuthentication
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied

from ..models import ApiToken, hash_token

# What a session that must change its password is told by the operator API.
FORCED_CHANGE_DETAIL = "Change your password first (your login used a one-time password)."


class ApiTokenAuthentication(TokenAuthentication):
    """A person's API token for scripts: ``Authorization: Token <key>``, looked up by its
    sha256 (the key itself is never stored)."""

    model = ApiToken

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(key)).first()
        if token is None:
            raise AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return token.user, token


class SessionAuthentication(BaseSessionAuthentication):
    """DRF's session authentication (CSRF-checked), refused with 403 while the session's
    login used a password someone else chose (``passwords.SESSION_KEY``). The middleware
    lets calls that bring an ``Authorization`` header through to the API, but a header no
    token class takes (``Basic …``, ``Bearer …``) falls back to the session here: the
    session itself, whatever headers come with it, may not use the operator API until the
    password is changed. Raises ``PermissionDenied``."""

    def authenticate(self, request: Any) -> tuple[Any, None] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        from ..passwords import SESSION_KEY  # DRF loads this module early: import late

        session = getattr(request._request, "session", None)
        # the operator API; its docs (/api/docs/, /api/schema/) stay readable
        operator_api = request._request.path.startswith("/api/v1/")
        if operator_api and session is not None and session.get(SESSION_KEY):
            raise PermissionDenied(FORCED_CHANGE_DETAIL)
        return result
