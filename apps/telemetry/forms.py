"""Forms of the telemetry pages: the records explorer's filters and the export's notes (both
GET forms: they read, they change nothing)."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from .explorer import DEFAULT_RANGE, RANGES
from .models import Outcome, Variant

RANGE_CHOICES = [(label, f"last {label}") for label in RANGES]


class RecordFilterForm(forms.Form):
    """The explorer's filters; every field optional. ``after`` is the keyset cursor."""

    range = forms.ChoiceField(choices=RANGE_CHOICES, required=False, label="Time")
    outcome = forms.ChoiceField(
        choices=[("", "any"), *Outcome.choices], required=False, label="Outcome"
    )
    version = forms.CharField(required=False, max_length=80, label="Version digest")
    variant = forms.ChoiceField(
        choices=[("", "any"), *Variant.choices], required=False, label="Variant"
    )
    session = forms.CharField(required=False, max_length=128, label="Session")
    min_cost = forms.DecimalField(
        required=False,
        min_value=Decimal(0),
        max_digits=18,
        decimal_places=8,
        label="Min cost (USD)",
    )
    min_latency = forms.IntegerField(
        required=False, min_value=0, max_value=2**31 - 1, label="Min latency (ms)"
    )
    outliers = forms.BooleanField(required=False, label="Cost outliers only")
    after = forms.CharField(required=False, max_length=200, widget=forms.HiddenInput)

    def range_label(self) -> str:
        value = self.cleaned_data.get("range") if self.is_valid() else ""
        return value or DEFAULT_RANGE


class ExportForm(forms.Form):
    """What the operator adds to an exported evaluation case."""

    expected = forms.ChoiceField(
        choices=[("", "leave open"), *Outcome.choices],
        required=False,
        label="What should have happened (outcome)",
    )
    input = forms.CharField(
        required=False,
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Input (the user's message, from the trace)",
    )
    note = forms.CharField(
        required=False,
        max_length=5_000,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Note (what should have happened)",
    )
