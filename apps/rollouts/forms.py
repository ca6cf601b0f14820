from typing import cast

from django import forms


class DeployForm(forms.Form):
    environment = forms.TypedChoiceField(coerce=int)
    version = forms.TypedChoiceField(
        coerce=int, help_text="the bundle version runtimes will serve as stable"
    )
    reason = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
        max_length=2000,
    )

    def __init__(self, *args, environments=(), versions=(), **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["environment"]).choices = [
            (e.pk, f"{e.name}{' (production)' if e.is_production else ''}") for e in environments
        ]
        cast(forms.ChoiceField, self.fields["version"]).choices = [
            (v.pk, f"v{v.number} — {v.message[:60]}") for v in versions
        ]
