from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


class CanViewFlags(BasePermission):
    """Reads need the role's view permission (Viewers and up); what a write needs is checked
    by the service it calls, with the tenant."""

    message = "Your role does not allow reading flags and kill switches."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.method not in SAFE_METHODS:
            return True
        permission = getattr(view, "view_permission", "flags.view_flag")
        return bool(
            request.user and request.user.is_authenticated and request.user.has_perm(permission)
        )
