"""Sending a user who logged in with a password someone else chose to the change page."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

from .api.token_auth import FORCED_CHANGE_DETAIL
from .passwords import SESSION_KEY

# Where a user who must change their password may still go: the change page itself, and
# the way out. Static files never reach Django's middleware (WhiteNoise answers first).
_ALWAYS_OPEN = ("accounts:password_change", "logout", "login")


class PasswordChangeRequiredMiddleware:
    """While the session says the login used an initial or one-time password
    (``passwords.SESSION_KEY``, set at login), every page redirects to the password change
    page (htmx requests get ``HX-Redirect``), and the operator API answers a call that has
    only the session to show with 403. Calls with an ``Authorization`` header (API tokens,
    runtime tokens), the token endpoint and the API docs are not affected here; a header no
    token class takes falls back to the session, which ``api.token_auth.SessionAuthentication``
    refuses the same way. Costs no query:
    the flag lives in the session."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        if session is None or not session.get(SESSION_KEY):
            return self.get_response(request)
        if not request.user.is_authenticated:
            return self.get_response(request)
        if request.path in {reverse(name) for name in _ALWAYS_OPEN}:
            return self.get_response(request)
        if request.path.startswith("/api/"):
            # the API's docs, the runtime API and calls that bring their own token (scripts)
            # are not a browser session's pages
            if (
                not request.path.startswith("/api/v1/")
                or "Authorization" in request.headers
                or request.path == reverse("api-token")
            ):
                return self.get_response(request)
            return JsonResponse(
                {
                    "detail": FORCED_CHANGE_DETAIL,
                    "errors": {},
                },
                status=403,
            )
        target = reverse("accounts:password_change")
        if request.headers.get("HX-Request"):
            # a live part (the sidebar's alert badge) of a page: send the whole page to the
            # change page, unless it is that page already (a redirect would reload it and
            # wipe what the user is typing)
            response = HttpResponse(status=204)
            if urlsplit(request.headers.get("HX-Current-URL", "")).path != target:
                response["HX-Redirect"] = target
            return response
        return redirect(target)
