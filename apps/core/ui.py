"""Small helpers shared by the browser views of every app."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

T = TypeVar("T")


def call_service(form: forms.Form, fn: Callable[[], T]) -> T | None:
    """Run a service for a bound, valid form; put its validation errors on the form's fields
    (unknown field names become form-wide errors). Returns None when it refused."""
    try:
        return fn()
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, messages in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
        else:
            form.add_error(None, exc)  # keeps the code ("stale" for a StaleVersion)
        return None


def paginate(
    request: HttpRequest, queryset: QuerySet[Any] | Sequence[Any], per_page: int = 25
) -> Page:
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
        max_length=2000,
    )


class ExpectedVersionField(forms.IntegerField):
    """The version of "the current X" the page showed, sent back as a hidden input so the
    service can refuse the change if someone else changed X in between (optimistic
    concurrency, docs/decisions/0007)."""

    widget = forms.HiddenInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", 2**31 - 1)
        kwargs.setdefault(
            "error_messages",
            {"required": "The page did not say which version it showed: reload it and retry."},
        )
        super().__init__(**kwargs)


class VersionedReasonForm(ReasonForm):
    """A confirmation's reason plus the version of the thing it confirms a change of."""

    expected_version = ExpectedVersionField()


def rebase_if_stale(form: forms.Form, version: int) -> None:
    """After a change refused as stale, a confirmation page re-renders stating the *current*
    effect; its hidden ``expected_version`` must then be the version that effect was read
    from (not the one posted), so a second, informed click acts on what is now shown."""
    if form.is_bound and form.has_error(NON_FIELD_ERRORS, "stale"):
        form.data = {**form.data, "expected_version": str(version)}
