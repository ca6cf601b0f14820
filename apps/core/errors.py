"""Errors under ``/api/`` are JSON in the API's one shape (``{"detail": ..., "errors": {}}``),
whatever raised them: an unknown path (404), a refused CSRF or permission check outside DRF
(403), a malformed or oversized request (400, 413), a lost database (503 with ``Retry-After``)
and an unhandled exception (500). Pages elsewhere keep Django's HTML error pages. DRF views
use ``apps.core.api.exception_handler``; the runtime fast path answers its own routes in
the same shape."""

from __future__ import annotations

import sys
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase, HttpResponseRedirectBase
from django.middleware.common import CommonMiddleware
from django.utils.deprecation import MiddlewareMixin
from django.utils.http import escape_leading_slashes
from django.views import defaults

log = structlog.get_logger(__name__)

API_PREFIX = "/api/"
# A JSON body larger than this is refused with 413 before anything reads it. DRF's parsers
# read the stream themselves, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE check, so the API
# needs its own limit; flag imports and bundles are the largest bodies it takes.
DEFAULT_API_MAX_BODY_BYTES = 10 * 1024 * 1024


# What a lost database raises through the ORM: the server restarting or failing over, a
# connection it terminated, one it refuses (too many clients), a deadlock or serialisation
# failure (both OperationalError). All are transient: the answer says when to try again.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
DATABASE_RETRY_AFTER_S = 2
DATABASE_UNAVAILABLE_DETAIL = (
    "The database is unavailable for a moment and the request did not complete; "
    f"try again in {DATABASE_RETRY_AFTER_S} seconds."
)


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def json_error(status: int, detail: str) -> JsonResponse:
    """One error in the API's shape, never cached."""
    response = JsonResponse({"detail": detail, "errors": {}}, status=status)
    response["Cache-Control"] = "no-store"
    return response


def too_large_detail() -> str:
    return f"The request body is larger than the {api_max_body_bytes()} bytes this API accepts."


def api_max_body_bytes() -> int:
    return int(getattr(settings, "API_MAX_BODY_BYTES", DEFAULT_API_MAX_BODY_BYTES))


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler400``: also what Django answers for ``RequestDataTooBig``, which is a 413."""
    if isinstance(exception, RequestDataTooBig):
        if is_api(request):
            return json_error(413, too_large_detail())
        return HttpResponse("Request body too large.", status=413, content_type="text/plain")
    if is_api(request):
        return json_error(400, "Bad request.")
    return defaults.bad_request(request, exception)  # type: ignore[arg-type]


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler403``."""
    if is_api(request):
        return json_error(403, "You do not have permission to perform this action.")
    return defaults.permission_denied(request, exception)  # type: ignore[arg-type]


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``."""
    if is_api(request):
        return json_error(404, f"No API endpoint at {request.path}.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: the error itself is logged by Django, never shown. A lost database
    raised outside a view (a middleware's query, the session saved after the view), which
    ``DatabaseUnavailableMiddleware`` does not see, still answers 503: Django calls this inside
    the exception's handling (asgiref carries it into the thread), so it is ``sys.exc_info()``."""
    if isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        return database_unavailable(request)
    if is_api(request):
        return json_error(500, "Internal server error.")
    return defaults.server_error(request)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: JSON under /api/, Django's page elsewhere."""
    if is_api(request):
        return json_error(403, f"CSRF verification failed: {reason}")
    from django.views.csrf import csrf_failure as django_csrf_failure  # local: rarely needed

    return django_csrf_failure(request, reason)


class HttpResponsePermanentRedirectKeepingMethod(HttpResponseRedirectBase):
    """308 Permanent Redirect (RFC 9110 15.4.9): the client repeats the same method with the
    same body at the new address."""

    status_code = 308


class ApiCommonMiddleware(CommonMiddleware):
    """Django's ``CommonMiddleware``, except that under /api/ a path missing its trailing
    slash is answered with a 308, not a 301: after a 301 clients resend a POST as a GET
    without its body (so ``POST /api/v1/tenants`` "succeeded" by listing tenants), and in
    DEBUG Django raised a 500 for it instead."""

    def get_full_path_with_slash(self, request: HttpRequest) -> str:
        if is_api(request):
            return escape_leading_slashes(request.get_full_path(force_append_slash=True))
        return super().get_full_path_with_slash(request)

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if (
            is_api(request)
            and response.status_code == 404
            and self.should_redirect_with_slash(request)
        ):
            return HttpResponsePermanentRedirectKeepingMethod(
                self.get_full_path_with_slash(request)
            )
        return super().process_response(request, response)


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """503 with ``Retry-After``: JSON under /api/, a plain page elsewhere (the site's layout
    itself reads the database, so it cannot be rendered now)."""
    response: HttpResponse
    if is_api(request):
        response = json_error(503, DATABASE_UNAVAILABLE_DETAIL)
    else:
        response = HttpResponse(
            DATABASE_UNAVAILABLE_DETAIL, status=503, content_type="text/plain; charset=utf-8"
        )
        response["Cache-Control"] = "no-store"
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
    return response


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """A view (DRF's included: its handler leaves these to Django) that loses the database
    answers 503 with ``Retry-After`` instead of a 500. Its transaction was rolled back by
    ``transaction.atomic`` (or never committed), so nothing half-done remains; Django replaces
    the broken connection before the next request (``close_old_connections``)."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        if not isinstance(exception, DATABASE_UNAVAILABLE):
            return None
        log.warning("database.unavailable", path=request.path, error=str(exception).strip())
        return database_unavailable(request)
