from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from apps.core.ui import local_url, query_choice
from apps.tenancy.context_processors import current_tenant_for
from apps.tenancy.models import Environment
from apps.tenancy.selectors import environment_list_for_user


def tenant_environments(request: HttpRequest) -> tuple[Any, list[Environment]]:
    tenant = current_tenant_for(request)
    environments = (
        list(environment_list_for_user(user=request.user, tenant=tenant)) if tenant else []
    )
    return tenant, environments


def selected_environment(
    request: HttpRequest, environments: list[Environment]
) -> Environment | None:
    # ?environment=<id> that is not one of these is a 404: never another environment's flags.
    return query_choice(
        request,
        "environment",
        {str(e.pk): e for e in environments},
        environments[0] if environments else None,
    )


def safe_next(request: HttpRequest, default: str) -> str:
    """Where to go back to after a POST: the ``next`` field when it is a local path."""
    return local_url(request, request.POST.get("next"), default)
