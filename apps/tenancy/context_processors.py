from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .selectors import tenant_list_for_user

SESSION_KEY = "current_tenant_slug"


def current_tenant(request: HttpRequest) -> dict[str, Any]:
    """The tenant switcher: the tenants this user may see and the one the pages show."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    cached = getattr(request, "_tenant_switcher", None)
    if cached is not None:
        return cached
    tenants = list(tenant_list_for_user(user=request.user))
    wanted = request.session.get(SESSION_KEY)
    current = next((t for t in tenants if t.slug == wanted), tenants[0] if tenants else None)
    context = {"tenants": tenants, "current_tenant": current}
    request._tenant_switcher = context  # type: ignore[attr-defined]  # once per request
    return context


def current_tenant_for(request: HttpRequest) -> Any:
    return current_tenant(request).get("current_tenant")
