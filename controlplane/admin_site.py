"""Django's admin, read-only and off unless an operator turns it on.

Every change in this product goes through a service that authorises it, validates it, bumps
the revision runtimes watch and writes the audit event. The admin writes models directly and
would bypass all of that (it once made a Viewer a superuser with no audit event), so:

- it is not mounted unless ``DJANGO_ADMIN_ENABLED=true`` (``controlplane/urls.py``);
- where it is, every ModelAdmin registered on the site — Django's User and Group, django-axes'
  lockouts, the apps' own — is made read-only at registration: no add, change, delete or
  actions, and no password changes. It is a window for inspecting rows, nothing more."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

READ_ONLY = "The Django admin is read-only here: change things in the product, where it is audited."


class ReadOnlyModelAdminMixin:
    """Refuses every write a ModelAdmin offers (views, actions, inlines through the parent)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}


class ReadOnlyAdminSite(admin.AdminSite):
    """The default admin site (see ``ReadOnlyAdminConfig``): whatever registers on it, by
    ``admin.site.register`` or ``@admin.register``, is registered read-only."""

    site_header = "Agent control plane — read-only admin"

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        base = admin_class or admin.ModelAdmin
        read_only = type(f"ReadOnly{base.__name__}", (ReadOnlyModelAdminMixin, base), {})
        super().register(model_or_iterable, read_only, **options)

    def password_change(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        raise PermissionDenied(READ_ONLY)


class ReadOnlyAdminConfig(AdminConfig):
    """``django.contrib.admin`` with ``ReadOnlyAdminSite`` as ``admin.site``."""

    default_site = "controlplane.admin_site.ReadOnlyAdminSite"
