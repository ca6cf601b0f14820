"""The throttle of the anonymous token endpoint (it takes passwords).

Its counters live in the cache (Redis in production). When the cache cannot be reached the
throttle lets the request through on purpose, logged: a login must not answer 500 because a
cache is down, and guessing stays bounded by the login lockout (django-axes, kept in the
database, per username and address). "Cannot be reached" covers both a cache that raises
(Django's RedisCache) and one that swallows its errors and answers None (django-redis with
``IGNORE_EXCEPTIONS``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from redis.exceptions import RedisError
from rest_framework.throttling import AnonRateThrottle

from ..client_ip import client_ip

if TYPE_CHECKING:  # rest_framework.views imports throttles through its settings
    from rest_framework.request import Request
    from rest_framework.views import APIView

log = structlog.get_logger(__name__)


class LoginRateThrottle(AnonRateThrottle):
    """``anon`` rate per client address (see ``client_ip``): DRF's sliding window, with every
    cache call guarded (fails open, logged)."""

    # set from the rate by SimpleRateThrottle.__init__; the stubs do not declare them
    num_requests: int
    duration: int

    def get_ident(self, request: Request) -> str:
        return client_ip(request)

    def allow_request(self, request: Request, view: APIView) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        try:
            history = self.cache.get(self.key, [])
        except (RedisError, OSError) as exc:  # down or hung (the client's socket timeout)
            log.warning("throttle.cache_unavailable", error=repr(exc), scope=self.scope)
            return True
        if history is None:  # a cache that hides its errors
            log.warning("throttle.cache_unavailable", error="no answer", scope=self.scope)
            return True
        self.history, self.now = history, self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) >= self.num_requests:
            return self.throttle_failure()
        return self.throttle_success()

    def throttle_success(self) -> bool:
        self.history.insert(0, self.now)
        try:
            self.cache.set(self.key, self.history, self.duration)
        except (RedisError, OSError) as exc:
            log.warning("throttle.cache_unavailable", error=repr(exc), scope=self.scope)
        return True
