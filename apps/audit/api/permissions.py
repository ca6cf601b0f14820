from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.tenancy.selectors import tenant_ids_for_user


class SeesEveryTenant(BasePermission):
    """Admins only: checkpoints count the events of every tenant."""

    message = "Only Admins may read audit checkpoints: they cover every tenant's events."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and tenant_ids_for_user(user=user) is None)
