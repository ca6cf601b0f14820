"""What a login locked out by django-axes sees: after ``AXES_FAILURE_LIMIT`` wrong passwords
for one username from one address (``client_ip``), that pair is refused for
``AXES_COOLOFF_TIME``, on the login page, the API token endpoint and the password change
page (which checks the old password like a login) alike."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse


def login_lockout_message() -> str:
    """What a locked-out login is told (page and API alike)."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (
        f"Too many failed logins for this username from your address. "
        f"Logins are refused for {minutes} minutes; try again then."
    )


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """django-axes' lockout response (``AXES_LOCKOUT_CALLABLE``): the login page with the
    reason, or the API's error shape under /api/; 429 either way."""
    message = login_lockout_message()
    if original_response is not None and request.path == reverse("accounts:password_change"):
        # the change page checks the old password like a login; its form already says why
        original_response.status_code = 429
        return original_response
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message, "errors": {}}, status=429)
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    form = AuthenticationForm(request, initial={"username": username})
    context = {"form": form, "lockout_message": message, "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=429)
