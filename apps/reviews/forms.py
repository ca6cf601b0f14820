from __future__ import annotations

from decimal import Decimal

from django import forms

from .models import Grade


class GradeForm(forms.Form):
    session_id = forms.CharField(max_length=128, widget=forms.HiddenInput)
    grade = forms.ChoiceField(choices=Grade.choices, widget=forms.RadioSelect)
    note = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 1})
    )


class PolicyForm(forms.Form):
    share = forms.DecimalField(
        min_value=Decimal(0),
        max_value=Decimal(1),
        max_digits=5,
        decimal_places=4,
        label="Share of sessions to review (0 to 1)",
        help_text="0.05 sends 5 % of this agent's sessions to the queue; 0 turns sampling off",
    )
    reason = forms.CharField(required=False, max_length=2000)
