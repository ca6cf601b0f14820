"""The throttle of the anonymous token endpoint (it takes passwords).

Its counters live in the cache (Redis in production). When the cache cannot be reached the
throttle lets the request through on purpose, logged: a login must not answer 500 because a
cache is down, and guessing stays bounded by the login lockout (django-axes, kept in the
database, per username and address)."""

from __future__ import annotations

import structlog
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from ..client_ip import client_ip

log = structlog.get_logger(__name__)


class LoginRateThrottle(AnonRateThrottle):
    """``anon`` rate per client address (see ``client_ip``), failing open without a cache."""

    def get_ident(self, request: Request) -> str:
        return client_ip(request)

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return super().allow_request(request, view)
        except (RedisError, OSError) as exc:  # the cache is down or hung: fail open, logged
            log.warning("throttle.cache_unavailable", error=repr(exc), scope=self.scope)
            return True
