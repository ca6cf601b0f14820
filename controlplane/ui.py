"""Small helpers shared by the browser views of every app."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django import forms
from django.core.exceptions import ValidationError
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
            form.add_error(None, exc.messages)
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
