from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from guardian.shortcuts import get_objects_for_user

from apps.core.authz import requires
from apps.core.roles import TENANT_ACCESS_PERMISSION, Role
from apps.core.ui import ReasonForm, call_service, paginate
from apps.tenancy.models import Tenant
from apps.tenancy.selectors import tenant_list_for_user

from . import passwords, selectors, services
from .forms import OwnPasswordChangeForm, UserCreateForm, UserEditForm

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


@never_cache  # shows a secret once: no copy in any cache or history
@login_required
@requires("auth.add_user", ONLY_ADMINS)
def user_create(request: HttpRequest) -> HttpResponse:
    tenants = list(tenant_list_for_user(user=request.user))
    form = UserCreateForm(
        request.POST or None, tenant_choices=[(str(t.pk), t.name) for t in tenants]
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        wanted = set(data["tenants"])
        created = call_service(
            form,
            lambda: services.user_create(
                actor=request.user,
                username=data["username"],
                email=data["email"],
                role=Role(data["role"]),
                reason=data["reason"],
                tenants=[t for t in tenants if str(t.pk) in wanted],
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


@never_cache  # shows a secret once: no copy in any cache or history
@login_required
@requires("auth.change_user", ONLY_ADMINS)
def user_password_reset(request: HttpRequest, pk: int) -> HttpResponse:
    """An Admin gives a user a new one-time password: a confirmation with a reason, then
    the password, shown once on the answer page (never in a message or a redirect)."""
    try:
        user = selectors.user_list().get(pk=pk)
    except User.DoesNotExist:
        raise Http404("No such user.") from None
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        reason = form.cleaned_data["reason"]
        password = call_service(
            form,
            lambda: passwords.password_reset(actor=request.user, user=user, reason=reason),
        )
        if password is not None:
            return render(
                request,
                "accounts/password_reset_done.html",
                {"edited_user": user, "password": password},
            )
    return render(
        request,
        "partials/confirm.html",
        {
            "form": form,
            "title": f"Reset the password of {user.username}?",
            "effect": (
                f"{user.username}'s current password stops working and their browser sessions "
                "end. You get a one-time password to hand over; they must change it at their "
                "next login. Their API token keeps working."
            ),
            "action_label": "Reset password",
            "danger": True,
        },
    )


class PasswordChangeView(auth_views.PasswordChangeView):
    """Change one's own password (Django's view and form; the old password is checked
    through the login lockout, the change is made and audited by
    ``passwords.password_change``). After a login with a password someone else chose, every
    page leads here until it is changed."""

    form_class = OwnPasswordChangeForm
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("dashboard:overview")

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()
        kwargs["request"] = self.request
        return kwargs

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["forced"] = bool(self.request.session.get(passwords.SESSION_KEY))
        return context

    def form_valid(self, form: PasswordChangeForm) -> HttpResponse:
        try:
            changed = passwords.password_change(
                actor=self.request.user,
                user=form.user,
                old_password=form.cleaned_data["old_password"],
                new_password=form.cleaned_data["new_password1"],
            )
        except ValidationError as exc:
            # the service's "new_password" is the form's second field, where Django's own
            # form puts what the password validators say
            for field, errors in exc.message_dict.items():
                form.add_error("new_password2" if field == "new_password" else field, errors)
            return self.form_invalid(form)
        # the new password changed the session hash: keep this session, end the others
        update_session_auth_hash(self.request, changed)
        self.request.session.pop(passwords.SESSION_KEY, None)
        messages.success(self.request, "Your password is changed.")
        return redirect(self.get_success_url())


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


@never_cache  # shows a secret once: no copy in any cache or history
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
