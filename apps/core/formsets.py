"""Formsets whose row counts are checked: the management form a page posts is input too.

Django's formsets read a negative ``TOTAL_FORMS`` as "no rows" and stay valid, so a tampered
or broken post of an editor of rows (flag strategies, gate requirements, rollout steps)
would save an empty list in place of the rows the user saw: every row dropped, silently.
Use ``formset=CountedFormSet`` in every ``formset_factory``."""

from __future__ import annotations

from django.forms import BaseFormSet
from django.forms.formsets import INITIAL_FORM_COUNT, TOTAL_FORM_COUNT

# What the page is told when its row counts were not the ones it wrote.
INCOMPLETE = "The rows of this form were not sent whole: reload the page and retry."


class CountedFormSet(BaseFormSet):
    """A ``BaseFormSet`` that is invalid (a non-form error, ``INCOMPLETE``) when the posted
    ``TOTAL_FORMS`` or ``INITIAL_FORMS`` is negative (Django already refuses a count that is
    not a number, or above ``absolute_max``)."""

    def full_clean(self) -> None:
        super().full_clean()
        if not self.is_bound or not self.management_form.is_valid():
            return
        counts = self.management_form.cleaned_data
        if min(counts.get(TOTAL_FORM_COUNT) or 0, counts.get(INITIAL_FORM_COUNT) or 0) < 0:
            # the errors full_clean just gathered (non_form_errors() does not clean again)
            self.non_form_errors().append(INCOMPLETE)
