from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .context import bind_request_id, current_request_id, reset_request_id

# A caller-supplied id is kept only if it is short and harmless to log.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get("X-Request-ID", "")
        token = bind_request_id(supplied if _SAFE_REQUEST_ID.match(supplied) else None)
        try:
            request_id = current_request_id()
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            return response
        finally:
            reset_request_id(token)
