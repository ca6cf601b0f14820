from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from guardian.shortcuts import get_objects_for_user

from apps.core.authz import requires
from apps.core.roles import TENANT_ACCESS_PERMISSION, Role
from apps.core.ui import call_service, paginate
from apps.tenancy.models import Tenant
from apps.tenancy.selectors import tenant_list_for_user

from . import selectors, services
from .forms import UserCreateForm, UserEditForm

# Users and roles: only the Admin role has the auth.*_user permissions.
ONLY_ADMINS = "Only Admins manage users and roles."


@login_required
@requires("auth.view_user", ONLY_ADMINS)
def user_list(request: HttpRequest) -> HttpResponse:
    users = selectors.user_list()
    q = request.GET.get("q", "").strip()
    if q:
        users = users.filter(username__icontains=q)
    return render(request, "accounts/user_list.html", {"page": paginate(request, users), "q": q})


@login_required
@requires("auth.add_user", ONLY_ADMINS)
def user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        created = call_service(
            form,
            lambda: services.user_create(
                actor=request.user,
                username=data["username"],
                email=data["email"],
                role=Role(data["role"]),
                reason=data["reason"],
            ),
        )
        if created is not None:
            user, password = created
            return render(
                request, "accounts/user_created.html", {"new_user": user, "password": password}
            )
    return render(request, "tenancy/form.html", {"form": form, "title": "New user"})


def _granted_tenant_ids(user: User) -> set[str]:
    granted = get_objects_for_user(
        user,
        TENANT_ACCESS_PERMISSION,
        klass=Tenant,
        accept_global_perms=False,
        with_superuser=False,
    )
    return {str(pk) for pk in granted.values_list("pk", flat=True)}


@login_required
@requires("auth.change_user", ONLY_ADMINS)
def user_edit(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        user = selectors.user_list().get(pk=pk)
    except User.DoesNotExist:
        raise Http404("No such user.") from None
    tenants = list(tenant_list_for_user(user=request.user))
    granted = _granted_tenant_ids(user)
    role = selectors.user_role(user)
    form = UserEditForm(
        request.POST or None,
        tenant_choices=[(str(t.pk), t.name) for t in tenants],
        initial={
            "email": user.email,
            "role": role.value if role else Role.VIEWER.value,
            "is_active": user.is_active,
            "tenants": sorted(granted),
            "expected_version": selectors.user_version(user),
        },
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data

        def save() -> User:
            with transaction.atomic():  # the role change and the grants land together or not at all
                updated = services.user_update(
                    actor=request.user,
                    user=user,
                    email=data["email"],
                    role=Role(data["role"]),
                    is_active=data["is_active"],
                    reason=data["reason"],
                    expected_version=data["expected_version"],
                )
                wanted = set(data["tenants"])
                for tenant in tenants:
                    key = str(tenant.pk)
                    if key in wanted and key not in granted:
                        services.user_grant_tenant(
                            actor=request.user, user=user, tenant=tenant, reason=data["reason"]
                        )
                    elif key not in wanted and key in granted:
                        services.user_revoke_tenant(
                            actor=request.user, user=user, tenant=tenant, reason=data["reason"]
                        )
                return updated

        if call_service(form, save) is not None:
            messages.success(request, f"{user.username} saved.")
            return redirect("accounts:user_list")
    return render(request, "accounts/user_edit.html", {"form": form, "edited_user": user})


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "accounts/profile.html",
        {
            "role": selectors.user_role(request.user),
            "api_token": selectors.api_token_for_user(request.user),
        },
    )


@login_required
@require_POST
def api_token_rotate(request: HttpRequest) -> HttpResponse:
    token = services.api_token_rotate(actor=request.user, user=request.user)  # type: ignore[arg-type]
    return render(
        request,
        "accounts/profile.html",
        {
            "role": selectors.user_role(request.user),
            "api_token": selectors.api_token_for_user(request.user),
            "new_token": token,
        },
    )
