from typing import cast

from django import forms


class RuntimeTokenForm(forms.Form):
    name = forms.CharField(
        max_length=120, help_text="which runtime or fleet uses it, e.g. support-bot prod pods"
    )
    environment = forms.TypedChoiceField(coerce=int)
    agent = forms.TypedChoiceField(
        coerce=int,
        required=False,
        empty_value=None,
        help_text="limit the token to one agent (optional)",
    )
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, help_text="leave empty for no expiry"
    )
    reason = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args, environments=(), agents=(), **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["environment"]).choices = [
            (e.pk, e.name) for e in environments
        ]
        cast(forms.ChoiceField, self.fields["agent"]).choices = [("", "All agents")] + [
            (a.pk, a.name) for a in agents
        ]
