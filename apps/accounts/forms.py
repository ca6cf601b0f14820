from collections.abc import Sequence
from typing import Any, cast

from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from apps.core.roles import ROLE_DESCRIPTIONS, Role
from apps.core.ui import ExpectedVersionField

from .lockout import login_lockout_message

ROLE_CHOICES = [(r.value, f"{r.value} — {ROLE_DESCRIPTIONS[r]}") for r in Role]


class TenantGrantsField(forms.MultipleChoiceField):
    """The tenants a user sees, as checkboxes (rendered as a fieldset with a legend by
    ``partials/form_fields.html``); choices are the tenants the editing Admin sees."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Tenants")
        kwargs.setdefault("help_text", "the tenants this user sees (Admins see all)")
        super().__init__(**kwargs)


class UserCreateForm(forms.Form):
    username = forms.RegexField(r"^[\w.@+-]{1,150}$", max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.VIEWER.value)
    tenants = TenantGrantsField()
    reason = forms.CharField(required=False, max_length=2000)

    def __init__(
        self, *args: Any, tenant_choices: Sequence[tuple[str, str]] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.MultipleChoiceField, self.fields["tenants"]).choices = tenant_choices


class UserEditForm(forms.Form):
    # the user's version the form was filled from: saving is refused if it moved on meanwhile
    expected_version = ExpectedVersionField()
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES)
    is_active = forms.BooleanField(required=False, label="Active (can log in)")
    tenants = TenantGrantsField()
    reason = forms.CharField(required=False, max_length=2000)

    def __init__(
        self, *args: Any, tenant_choices: Sequence[tuple[str, str]] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.MultipleChoiceField, self.fields["tenants"]).choices = tenant_choices


class OwnPasswordChangeForm(PasswordChangeForm):
    """Django's password change form (old password, new twice, the password validators),
    except that the old password is checked through ``authenticate``: a wrong guess counts
    towards the login lockout (django-axes), and a locked-out user is refused even with the
    right one. Saving goes through ``apps.accounts.passwords.password_change``."""

    def __init__(self, user: Any, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        self.request = request
        super().__init__(user, *args, **kwargs)

    def clean_old_password(self) -> str:
        old_password: str = self.cleaned_data["old_password"]
        checked = authenticate(
            self.request, username=self.user.get_username(), password=old_password
        )
        if getattr(self.request, "axes_locked_out", False):
            raise ValidationError(login_lockout_message(), code="locked_out")
        if checked is None or checked.pk != self.user.pk:
            raise ValidationError(
                self.error_messages["password_incorrect"], code="password_incorrect"
            )
        return old_password
