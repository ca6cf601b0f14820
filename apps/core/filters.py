"""Query-parameter filters of API lists: django-filter ``FilterSet``s with strict values.

An app's ``api/filters.py`` declares one ``FilterSet`` per list view, set on the view as
``filterset_class``; the list calls ``self.filter_queryset(self.get_queryset())``, so the
filters narrow what the scoped selector returned and can never widen it. The project's
``DjangoFilterBackend`` (``REST_FRAMEWORK["DEFAULT_FILTER_BACKENDS"]``) raises a value that
does not parse as a DRF ``ValidationError``, which ``apps.core.api.exception_handler`` turns
into the one error shape: 400 ``{"detail": …, "errors": {"<parameter>": ["…"]}}``. An absent
or empty parameter filters nothing.

The filters here state their OpenAPI schema explicitly (type, bounds, enum, description), so
drf-spectacular documents each parameter as exactly what it accepts and the API fuzzer sends
values in and out of that range: anything outside is a 400, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field

# PostgreSQL's bigint: the largest id any table of the project can hold.
MAX_ID = 2**63 - 1

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
DATE_TIME_EXAMPLE = "2026-11-23T12:00:00Z"


class FilterSet(django_filters.rest_framework.FilterSet):
    """Base of the project's API filter sets (no behaviour of its own yet: the one place to
    add one, e.g. refusing unknown parameters, for every list at once)."""


def _schema(schema: dict[str, Any], help_text: str) -> dict[str, Any]:
    return {**schema, "description": help_text} if help_text else schema


class IdFilter(django_filters.Filter):
    """A database id (or any whole-number bound such as "after event N"): ``min_value`` (1
    by default) to ``max_value`` (``MAX_ID`` by default; lower for a number that becomes
    something narrower, e.g. seconds of a ``timedelta``). ``"x"``, ``"1.5"``, ``"-1"`` or 30
    digits are a 400 with ``invalid`` (or the range) as the message, before any query runs."""

    field_class = forms.IntegerField

    def __init__(
        self,
        *args: Any,
        min_value: int = 1,
        max_value: int = MAX_ID,
        invalid: str = "A whole number.",
        help_text: str = "",
        **kwargs: Any,
    ) -> None:
        kwargs.update(
            min_value=min_value,
            max_value=max_value,
            help_text=help_text,
            error_messages={
                "invalid": invalid,
                "min_value": f"{invalid.rstrip('.')}: at least {min_value}.",
                "max_value": f"{invalid.rstrip('.')}: at most {max_value}.",
            },
        )
        super().__init__(*args, **kwargs)
        extend_schema_field(
            _schema(
                {"type": "integer", "format": "int64", "minimum": min_value, "maximum": max_value},
                help_text,
            )
        )(self)


class StrictBooleanField(forms.Field):
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``, any case);
    empty is None (not given); anything else is refused, not read as false."""

    default_error_messages = {"invalid": "Use true or false."}

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValidationError(self.error_messages["invalid"], code="invalid")


class BooleanFilter(django_filters.Filter):
    """A yes/no parameter (``StrictBooleanField``): ``?archived=maybe`` is a 400, where
    django-filter's own ``BooleanFilter`` would silently ignore it."""

    field_class = StrictBooleanField

    def __init__(self, *args: Any, help_text: str = "", **kwargs: Any) -> None:
        super().__init__(*args, help_text=help_text, **kwargs)
        extend_schema_field(_schema({"type": "boolean"}, help_text))(self)


class AwareDateTimeField(forms.Field):
    """An ISO 8601 date-time (``2026-11-23T12:00:00Z``, ``…+02:00``); one without an offset
    is read in the current time zone, as the dashboard reads it. The value is the instant in
    UTC; one outside what Python can hold in UTC (year 1 at +14:00) is refused too."""

    default_error_messages = {"invalid": f"Use an ISO 8601 time such as {DATE_TIME_EXAMPLE}."}

    def to_python(self, value: Any) -> datetime | None:
        if value in (None, ""):
            return None
        try:
            parsed = parse_datetime(str(value).strip())
        except ValueError:  # well formed, but no such date (February 30th)
            parsed = None
        if parsed is None:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        try:
            if timezone.is_naive(parsed):
                parsed = timezone.make_aware(parsed)
            # In UTC: PostgreSQL refuses offsets Python accepts (+20:18), and the instant
            # is what is compared.
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValidationError(self.error_messages["invalid"], code="invalid") from None


class DateTimeFilter(django_filters.Filter):
    """A point in time compared with ``lookup_expr`` (``gte`` for "since", ``lte`` for
    "until"), inclusive as written."""

    field_class = AwareDateTimeField

    def __init__(self, *args: Any, help_text: str = "", **kwargs: Any) -> None:
        super().__init__(*args, help_text=help_text, **kwargs)
        extend_schema_field(_schema({"type": "string", "format": "date-time"}, help_text))(self)


class TextFilter(django_filters.CharFilter):
    """Free text, taken as sent (not stripped), at most ``max_length`` characters."""

    def __init__(
        self, *args: Any, help_text: str = "", max_length: int = 500, **kwargs: Any
    ) -> None:
        super().__init__(
            *args,
            help_text=help_text,
            max_length=max_length,
            strip=False,
            error_messages={"max_length": f"At most {max_length} characters."},
            **kwargs,
        )
        extend_schema_field(_schema({"type": "string", "maxLength": max_length}, help_text))(self)


class ChoiceFilter(django_filters.ChoiceFilter):
    """One of ``choices`` (values and labels); anything else is a 400 naming them."""

    def __init__(
        self, *args: Any, choices: list[tuple[str, str]], help_text: str = "", **kwargs: Any
    ) -> None:
        values = [value for value, _label in choices]
        super().__init__(
            *args,
            choices=choices,
            help_text=help_text,
            error_messages={"invalid_choice": f"Use one of: {', '.join(values)}."},
            **kwargs,
        )
        extend_schema_field(_schema({"type": "string", "enum": values}, help_text))(self)
