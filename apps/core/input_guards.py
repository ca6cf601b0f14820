"""Hostile input, refused in one place (decision 0011).

Two rules apply to everything that reaches the Django side, whichever app it is for:

* **Request level**: an API body is at most ``API_MAX_BODY_BYTES`` bytes (413
  otherwise; 10 MiB by default) and nested at most
  ``API_MAX_JSON_DEPTH`` containers deep (400). ``GuardedJSONParser`` is DRF's default parser;
  code that parses JSON text itself (form textareas, file imports) calls ``json_loads``.
* **Field level**: no NUL character (U+0000) in any text, object key or query string
  (PostgreSQL text and jsonb refuse it), no non-finite number in JSON (jsonb refuses it), and
  integers bounded by the database column they are stored in. DRF and Django form
  ``IntegerField``\\ s default to the widest column (signed 64 bit) and a ``pre_save`` check
  holds every model field to its own column's range. What still slips past (bulk writes,
  upserts) is caught as a ``DataError`` and answered 400, never 500.

Errors name the field by its JSON path: ``toggles["a\\u0000"]``, ``constraints[0].values[2]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from django import forms
from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DataError, connections, models
from django.db.models.expressions import Combinable
from django.db.models.signals import pre_save
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework import fields as drf_fields
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from .errors import api_max_body_bytes

log = structlog.get_logger(__name__)

NUL = "\x00"
NUL_MESSAGE = "NUL characters (U+0000) are not allowed."


def is_digits(text: str, *, max_digits: int = 18) -> bool:
    """``text`` is a whole number written in ASCII digits, at most ``max_digits`` long.
    ``str.isdigit()`` also takes a superscript two (which ``int()`` refuses: a 500) and
    fullwidth or Arabic-Indic digits (which ``int()`` reads but no SDK or user means), and
    ``int()`` refuses more than 4300 digits: every id, index or count read from input goes
    through this first."""
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()


def whole_number(text: str, *, max_digits: int = 18) -> int | None:
    """``int(text)`` when ``is_digits(text, max_digits=…)``, else None."""
    return int(text) if is_digits(text, max_digits=max_digits) else None


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1  # IntegerField and PositiveIntegerField columns
DEFAULT_MAX_JSON_DEPTH = 64


def max_json_depth() -> int:
    """Containers (objects, arrays) allowed inside one another; settings.API_MAX_JSON_DEPTH."""
    return int(getattr(settings, "API_MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH))


def max_body_bytes() -> int:
    """The largest API request body read, in bytes: settings.API_MAX_BODY_BYTES (one limit
    for the API, whoever checks it)."""
    return api_max_body_bytes()


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class JSONShapeError(ValueError):
    """JSON that parsed but is refused. ``errors`` maps a path to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k or '(body)'}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def _child_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key and NUL not in key and key.replace("_", "a").replace("-", "a").isalnum():
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def json_problems(value: Any, *, max_depth: int | None = None) -> dict[str, list[str]]:
    """Walk parsed JSON (iteratively: deep input must not exhaust the stack) and return what
    breaks the field-level rules, by path: NUL in a key or string, a non-finite number, nesting
    beyond ``max_depth`` (no depth check when None). Empty when the value is acceptable."""
    problems: dict[str, list[str]] = {}
    stack: list[tuple[str, Any, int]] = [("", value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if isinstance(item, dict | list):
            if max_depth is not None and depth >= max_depth:
                problems[path] = [f"Nested deeper than {max_depth} levels."]
                return problems  # one is enough; the rest is as deep
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                child_path = _child_path(path, key)
                if isinstance(key, str) and NUL in key:
                    problems.setdefault(child_path, []).append(NUL_MESSAGE)
                stack.append((child_path, child, depth + 1))
        elif isinstance(item, str):
            if NUL in item:
                problems.setdefault(path, []).append(NUL_MESSAGE)
        elif isinstance(item, float) and not math.isfinite(item):
            problems.setdefault(path, []).append("Numbers must be finite.")
    return problems


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_loads(
    text: str | bytes,
    *,
    max_depth: int | None = None,
    parse_float: Callable[[str], Any] | None = None,
) -> Any:
    """``json.loads`` for input from outside: NaN/Infinity refused, nesting bounded (default
    ``API_MAX_JSON_DEPTH``), no NUL, no non-finite number. Raises ``ValueError`` (for a
    syntax error) or its subclass ``JSONShapeError`` (with ``errors`` by path)."""
    depth = max_json_depth() if max_depth is None else max_depth
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=parse_float)
    except RecursionError:
        raise JSONShapeError({"": [f"Nested deeper than {depth} levels."]}) from None
    problems = json_problems(value, max_depth=depth)
    if problems:
        raise JSONShapeError(problems)
    return value


class GuardedJSONParser(BaseParser):
    """A JSON parser with the request-level guard: size (413), depth and NUL (400 by path).
    The default parser of every API view (settings.REST_FRAMEWORK). ``parse_float``: what a
    number with a fraction or exponent becomes (``float`` by default).

    Not a subclass of DRF's ``JSONParser`` on purpose: DRF (3.16 on) hands a ``JSONParser``
    ``request.body``, which Django caps at ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB, meant for
    forms), so any JSON body between that and ``API_MAX_BODY_BYTES`` (10 MiB: flag imports,
    bundles) was refused with a 413 naming the 10 MiB limit. This one reads the stream
    itself, up to the API's own limit."""

    media_type = "application/json"
    renderer_class = JSONRenderer
    parse_float: Callable[[str], Any] | None = None

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        limit = max_body_bytes()
        request = (parser_context or {}).get("request")
        declared = _declared_length(request) if request is not None else 0
        if declared > limit:
            raise PayloadTooLarge(f"The request body is {declared:,} bytes; the limit: {limit:,}.")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is over the limit of {limit:,} bytes.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json_loads(raw.decode(encoding), parse_float=self.parse_float)
        except JSONShapeError as exc:
            raise exceptions.ValidationError(
                {path or "non_field_errors": messages for path, messages in exc.errors.items()}
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None


# ------------------------------------------------------------------ integers and columns


def _column_range(field: models.Field, using: str) -> tuple[int | None, int | None]:
    internal = field.get_internal_type()
    if not internal.endswith(("IntegerField", "AutoField")):
        return None, None
    return connections[using].ops.integer_field_range(internal)


def model_values_problems(instance: models.Model, using: str = "default") -> dict[str, list[str]]:
    """What in ``instance`` its columns cannot store: NUL in text or JSON, non-finite numbers
    in JSON, integers beyond the column's range. Keyed by model field name."""
    problems: dict[str, list[str]] = {}
    for field in instance._meta.concrete_fields:
        value = getattr(instance, field.attname, None)
        if value is None or isinstance(value, Combinable):
            continue  # F() expressions are computed by the database
        if isinstance(field, models.JSONField):
            for path, messages in json_problems(value).items():
                problems.setdefault(field.name, []).extend(
                    f"{path}: {m}" if path else m for m in messages
                )
        elif isinstance(value, str):
            if NUL in value:
                problems.setdefault(field.name, []).append(NUL_MESSAGE)
        elif isinstance(value, int) and not isinstance(value, bool):
            low, high = _column_range(field, using)
            if (low is not None and value < low) or (high is not None and value > high):
                problems.setdefault(field.name, []).append(
                    f"Ensure this value is between {low} and {high}."
                )
    return problems


def refuse_unstorable_values(
    sender: type[models.Model], instance: models.Model, using: str = "default", **_: Any
) -> None:
    """pre_save receiver: a row with a value its column cannot hold is refused with a
    ValidationError by field (400 in the API, a form error in the UI) instead of a DataError."""
    problems = model_values_problems(instance, using)
    if problems:
        raise ValidationError(problems)


def _bounded_drf_integer_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: drf_fields.IntegerField, **kwargs: Any) -> None:
        if kwargs.get("max_value") is None:
            kwargs["max_value"] = INT64_MAX
        if kwargs.get("min_value") is None:
            kwargs["min_value"] = INT64_MIN
        original(self, **kwargs)

    __init__._input_guard = True  # type: ignore[attr-defined]
    return __init__


def _bounded_form_integer_init(original: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: forms.IntegerField, *args: Any, **kwargs: Any) -> None:
        if not isinstance(self, forms.FloatField):  # Float and Decimal fields subclass it
            if kwargs.get("max_value") is None:
                kwargs["max_value"] = INT64_MAX
            if kwargs.get("min_value") is None:
                kwargs["min_value"] = INT64_MIN
        original(self, *args, **kwargs)

    __init__._input_guard = True  # type: ignore[attr-defined]
    return __init__


def bound_integer_fields() -> None:
    """Give every DRF and Django form IntegerField declared without bounds the widest column's
    range (signed 64 bit), so a huge number is a 400 naming the field. Idempotent.

    Why a patch: most input serializers here are plain ``Serializer``\\ s declaring
    ``IntegerField`` directly; neither DRF nor Django has a setting for a default bound, and a
    bound repeated on every declaration is the one the next endpoint forgets. Narrower columns
    are held to their range by ``refuse_unstorable_values``."""
    if not getattr(drf_fields.IntegerField.__init__, "_input_guard", False):
        drf_fields.IntegerField.__init__ = _bounded_drf_integer_init(  # type: ignore[method-assign]
            drf_fields.IntegerField.__init__
        )
    if not getattr(forms.IntegerField.__init__, "_input_guard", False):
        forms.IntegerField.__init__ = _bounded_form_integer_init(  # type: ignore[method-assign]
            forms.IntegerField.__init__
        )


# ---------------------------------------------------------------------------- middleware


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def _bad_request(request: HttpRequest, detail: str, errors: dict[str, list[str]]) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": detail, "errors": errors}, status=400)
    # Plain text: nothing of the input is echoed into HTML.
    return HttpResponseBadRequest(
        f"{detail} ({', '.join(errors)})", content_type="text/plain; charset=utf-8"
    )


class HostileInputMiddleware:
    """Refuses NUL in the path or the query string (``?q=%00``) before any view runs, and turns
    a ``DataError`` that escaped the field checks into a 400 instead of a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _is_api(request) and _declared_length(request) > max_body_bytes():
            # Refused before anything reads it; the UI's forms take file uploads, which
            # Django streams to disk, so only the API is held to the limit here.
            limit = max_body_bytes()
            return JsonResponse(
                {"detail": f"The request body is over the limit of {limit:,} bytes.", "errors": {}},
                status=413,
            )
        if NUL in request.path_info:
            return _bad_request(request, "Invalid path.", {"path": [NUL_MESSAGE]})
        errors: dict[str, list[str]] = {}
        for key, values in request.GET.lists():
            if NUL in key or any(NUL in v for v in values):
                errors[key.replace(NUL, "\\u0000")] = [NUL_MESSAGE]
        if errors:
            return _bad_request(request, "Invalid query string.", errors)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DataError):
            return data_error_response(request, exception)
        return None


def data_error_message(exc: DataError) -> str:
    """A short, safe description of a DataError (PostgreSQL's primary message, no values)."""
    diag = getattr(exc.__cause__, "diag", None)
    primary = getattr(diag, "message_primary", None) or "invalid value"
    return f"A value does not fit its database column: {primary}."


def data_error_response(request: HttpRequest, exc: DataError) -> HttpResponse:
    log.warning("input.data_error", path=request.path_info, error=str(exc)[:200])
    message = data_error_message(exc)
    return _bad_request(request, message, {"non_field_errors": [message]})


class InputGuardsConfig(AppConfig):
    """Installs the field-level rules at start-up (listed in INSTALLED_APPS)."""

    name = "controlplane"
    label = "controlplane_input_guards"
    verbose_name = "Input guards"

    def ready(self) -> None:
        bound_integer_fields()
        pre_save.connect(refuse_unstorable_values, dispatch_uid="apps.core.input_guards")
