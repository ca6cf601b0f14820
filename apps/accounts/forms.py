from collections.abc import Sequence
from typing import Any, cast

from django import forms

from apps.core.roles import ROLE_DESCRIPTIONS, Role
from apps.core.ui import ExpectedVersionField

ROLE_CHOICES = [(r.value, f"{r.value} — {ROLE_DESCRIPTIONS[r]}") for r in Role]


class UserCreateForm(forms.Form):
    username = forms.RegexField(r"^[\w.@+-]{1,150}$", max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=Role.VIEWER.value)
    reason = forms.CharField(required=False, max_length=2000)


class UserEditForm(forms.Form):
    # the user's version the form was filled from: saving is refused if it moved on meanwhile
    expected_version = ExpectedVersionField()
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=ROLE_CHOICES)
    is_active = forms.BooleanField(required=False, label="Active (can log in)")
    tenants = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="tenants this user sees (Admins see all)",
    )
    reason = forms.CharField(required=False, max_length=2000)

    def __init__(
        self, *args: Any, tenant_choices: Sequence[tuple[str, str]] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.MultipleChoiceField, self.fields["tenants"]).choices = tenant_choices
