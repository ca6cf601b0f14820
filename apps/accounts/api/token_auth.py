"""People's API tokens for scripts (``Authorization: Token <key>``), stored hashed.

A module of its own because DRF imports ``DEFAULT_AUTHENTICATION_CLASSES`` while
``rest_framework.views`` is still loading: nothing here may import DRF views or permissions."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from ..models import ApiToken, hash_token


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
