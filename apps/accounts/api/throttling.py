"""Per-token request limits for the runtime-facing Django endpoints (heartbeat, records, SDK
register and metrics): one runtime token cannot flood the control plane (issue 9, item 6).

A fixed one-minute window counted with ``cache.incr`` rather than DRF's sliding log: a fleet
shares its token, so a limit is thousands a minute and a log of that many timestamps per
request would cost more than the request. Applies only to requests authenticated with a
runtime token; everything else passes untouched. With the cache down the request passes
(the cache logs it): a limiter must not turn an outage into refusals."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

if TYPE_CHECKING:  # rest_framework.views imports this module through its settings
    from rest_framework.request import Request
    from rest_framework.views import APIView

WINDOW_S = 60


class RuntimeTokenRateThrottle(BaseThrottle):
    """At most ``RUNTIME_TOKEN_REQUESTS_PER_MINUTE`` requests per runtime token and minute;
    beyond, DRF answers 429 with ``Retry-After`` (seconds to the next window)."""

    clock = staticmethod(time.time)  # seconds since the epoch; tests hold it still

    def __init__(self) -> None:
        self._wait = 0.0

    def allow_request(self, request: Request, view: APIView) -> bool:
        from ..models import RuntimeToken  # local: loaded by DRF settings before the app registry

        token = request.auth
        if not isinstance(token, RuntimeToken):
            return True
        now = self.clock()
        window = int(now // WINDOW_S)
        key = f"throttle:runtime-token:{token.pk}:{window}"
        try:
            cache.add(key, 0, timeout=WINDOW_S + 5)
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: a fresh window
            return True
        if count is None:  # the cache is down and ignored its error
            return True
        if count > settings.RUNTIME_TOKEN_REQUESTS_PER_MINUTE:
            self._wait = (window + 1) * WINDOW_S - now
            return False
        return True

    def wait(self) -> float | None:
        return max(1.0, self._wait)
