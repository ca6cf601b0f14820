from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from ..selectors import user_is_admin


class IsAdminRole(BasePermission):
    message = "Only Admins manage users and roles."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated and user_is_admin(request.user))
