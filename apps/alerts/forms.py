from __future__ import annotations

from typing import Any

from django import forms

from apps.core.ui import ExpectedVersionField

from .services import KNOWN_KINDS

KINDS_HELP = "One alert kind per line, e.g. " + ", ".join(KNOWN_KINDS) + ". Empty: every kind."


class KindsField(forms.CharField):
    """Alert kinds, one per line (or separated by commas), as a list."""

    widget = forms.Textarea(attrs={"rows": 3})

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [k.strip() for k in text.replace(",", "\n").splitlines() if k.strip()]

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list | tuple) else value


class AlertChannelForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. on-call pager, #releases chat")
    url = forms.CharField(
        label="URL",
        max_length=500,
        help_text="The public http(s) address that receives a signed POST per alert.",
    )
    kinds = KindsField(required=False, help_text=KINDS_HELP)
    enabled = forms.BooleanField(required=False, initial=True)
    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            # The channel's version the form was filled from: saving is refused if it moved.
            self.fields["expected_version"] = ExpectedVersionField()
