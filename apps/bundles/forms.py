from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django import forms

from apps.core.formsets import CountedFormSet


class BundleEditorForm(forms.Form):
    message = forms.CharField(
        max_length=2000,
        label="Why this version",
        help_text="kept with the version and in the audit log (needed to push, not to check)",
        widget=forms.TextInput(attrs={"placeholder": "e.g. tighten refund rule after incident 42"}),
    )
    source = forms.CharField(
        label="Bundle (YAML or JSON)",
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 28,
                "spellcheck": "false",
                "class": "mono code-editor",
                "autocapitalize": "off",
                "autocomplete": "off",
            }
        ),
    )
    parent = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


class CompareForm(forms.Form):
    from_version = forms.TypedChoiceField(label="From", coerce=int)
    to_version = forms.TypedChoiceField(label="To", coerce=int)

    def __init__(self, *args: Any, numbers: list[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(n, f"v{n}") for n in numbers]
        for name in ("from_version", "to_version"):
            cast(forms.TypedChoiceField, self.fields[name]).choices = choices


class GateRequirementForm(forms.Form):
    suite = forms.CharField(max_length=64, required=False, help_text="e.g. golden, adversarial")
    min_pass_rate = forms.DecimalField(
        label="Minimum pass rate (%)",
        required=False,
        min_value=Decimal(0),
        max_value=Decimal(100),
        decimal_places=2,
        max_digits=5,
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        suite, rate = cleaned.get("suite"), cleaned.get("min_pass_rate")
        if suite and rate is None and not self.has_error("min_pass_rate"):
            self.add_error("min_pass_rate", "Give the minimum pass rate for this suite.")
        if rate is not None and not suite:
            self.add_error("suite", "Name the suite this minimum applies to.")
        return cleaned


GateRequirementFormSet = forms.formset_factory(
    GateRequirementForm, extra=2, can_delete=True, max_num=50, formset=CountedFormSet
)


class GateReasonForm(forms.Form):
    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? Needed when the gate gets looser."}
        ),
        help_text="goes into the audit log; required when a suite is dropped or a minimum lowered",
    )
