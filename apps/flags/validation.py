"""Validation and normalisation of Unleash documents: features, strategies, constraints,
segments, variants and dependencies. Pure functions, no database.

Two modes:

- **strict** (the editor and the operator API): only what the Unleash SDKs evaluate, with
  every value checked (a rollout is 0..100, a semver is a semver, a regex compiles, a
  referenced segment or parent flag exists), so a typo is a 400 and not a flag that is
  silently off;
- **import** (``strict=False``): stores a client-features payload faithfully, including what
  an SDK evaluates to "off" (an unknown operator, a custom strategy, an invalid regex, a
  missing segment), and reports those as warnings. Types are checked in both modes: every
  parameter is served as a string, because one number in a parameter makes the SDK's engine
  reject the whole payload.

Both modes run the same value checks (a number, an RFC 3339 date-time with its offset, a
semver without ``v``, a regex RE2 compiles, a CIDR, a percentage, a JSON payload): strict
mode refuses what fails them, import mode stores it and reports each as a warning.

Numbers become strings without losing a digit (``number_text``): integers exactly, floats
as their shortest round-trip form, ``Decimal`` as written.

Errors are keyed by path (``strategies.0.parameters.rollout``) so the API and the editor
can show them on the field."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import re2

from apps.core.lookalike import hidden_character_message, name_problem

FLAG_TYPES = ("release", "experiment", "operational", "kill-switch", "permission")
RESERVED_PREFIX = "kill."  # kill switches compile to features under this prefix
NAME_MAX = 200

LIST_OPERATORS = ("IN", "NOT_IN", "STR_STARTS_WITH", "STR_ENDS_WITH", "STR_CONTAINS", "IN_CIDR")
NUM_OPERATORS = ("NUM_EQ", "NUM_GT", "NUM_GTE", "NUM_LT", "NUM_LTE")
DATE_OPERATORS = ("DATE_AFTER", "DATE_BEFORE")
SEMVER_OPERATORS = ("SEMVER_EQ", "SEMVER_GT", "SEMVER_LT", "SEMVER_GTE", "SEMVER_LTE")
VALUE_OPERATORS = (*NUM_OPERATORS, *DATE_OPERATORS, *SEMVER_OPERATORS, "REGEX")
OPERATORS = (*LIST_OPERATORS, *VALUE_OPERATORS)

# Built-in strategies the SDKs evaluate, with their parameters: name -> (required, optional).
STRATEGIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "default": ((), ()),
    "userWithId": (("userIds",), ()),
    "flexibleRollout": (("rollout",), ("stickiness", "groupId")),
    "gradualRolloutUserId": (("percentage",), ("groupId",)),
    "gradualRolloutSessionId": (("percentage",), ("groupId",)),
    "gradualRolloutRandom": (("percentage",), ("groupId",)),
    "remoteAddress": (("IPs",), ()),
    "applicationHostname": (("hostNames",), ()),
}
PERCENT_PARAMETERS = ("rollout", "percentage")
PAYLOAD_TYPES = ("string", "json", "csv", "number")
WEIGHT_TYPES = ("variable", "fix")
TOTAL_WEIGHT = 1000

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_NUMBER = re.compile(r"^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
# RFC 3339 date-time with its offset: what every SDK parses the same way (Unleash's client
# specification writes DATE_AFTER/DATE_BEFORE values as 2022-01-29T13:00:00.000Z). A date
# alone, a local time without offset or ISO 8601's basic form are not comparable instants.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error comes back to the caller, not to stderr
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass
class Problems:
    """Errors by path (refuse the whole document) and warnings (stored anyway, on import)."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    located: list[tuple[str, str]] = field(default_factory=list)  # (path, message) per warning

    def error(self, path: str, message: str) -> None:
        self.errors.setdefault(path or "non_field_errors", []).append(message)

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}" if path else message)
        self.located.append((path, message))

    def __bool__(self) -> bool:
        return bool(self.errors)


@dataclass(frozen=True)
class Context:
    """What a strict check needs to know about the environment."""

    strict: bool = True
    flag_name: str = ""
    segment_ids: frozenset[int] | None = None  # None: do not check references
    flags: Mapping[str, list[dict[str, Any]]] | None = None  # other flags' dependencies by name
    # Editing an existing flag: its name cannot change, so the name rules (which may be newer
    # than the flag) are not held against the edit.
    name_fixed: bool = False


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def number_text(value: int | float | Decimal) -> str:
    """A JSON number as the string SDKs are served, losing no digit: integers of any size
    exactly; a float as its shortest round-trip form (``1234567.5``, never ``1.23457e+06``),
    integral ones below 1e21 without a fraction (``10.0`` -> ``10``, as JavaScript and so
    Unleash write it); a ``Decimal`` (what the editor and import parse JSON numbers into),
    or a float that remembers its JSON literal (what the API parses them into), with every
    digit it was written with. Raises ``ValueError`` for NaN and infinities,
    which have no JSON form."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    written = getattr(value, "json_text", None)
    if isinstance(value, float) and isinstance(written, str):
        # the API's JSON parser kept the literal (apps.core.api_http.JsonNumber)
        return number_text(Decimal(written))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("not a finite number")
        if value == value.to_integral_value() and abs(value.adjusted()) <= 40:
            return str(int(value))  # 1E+2 and 100.0 are both "100", exactly
        if -20 <= value.adjusted() <= 20:
            return format(value, "f")  # plain digits, as written
        return str(value)  # an exponent too large to spell out: 1.5E-400
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)  # Python's float repr is the shortest string that round-trips


def _as_string(value: Any, path: str, problems: Problems, *, what: str = "a string") -> str | None:
    """Strings stay; numbers become strings without losing a digit (Unleash serves every
    parameter as a string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        problems.error(path, f"Must be {what}.")
        return None
    if isinstance(value, int | float | Decimal):
        try:
            return number_text(value)
        except ValueError:
            problems.error(path, "Must be a finite number (NaN and infinity have no JSON form).")
            return None
    problems.error(path, f"Must be {what}.")
    return None


def _given(obj: dict[str, Any], key: str, default: Any) -> Any:
    """``obj[key]``, or ``default`` when it is absent or ``null``: an exporter that writes
    ``"stale": null`` or ``"stickiness": null`` means "not set", and refusing the document
    for it would lose everything else in it (issue 8, kind 2: null = none)."""
    value = obj.get(key)
    return default if value is None else value


def _as_bool(value: Any, path: str, problems: Problems) -> bool:
    if isinstance(value, bool):
        return value
    problems.error(path, "Must be true or false.")
    return False


def _as_list(value: Any, path: str, problems: Problems) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    problems.error(path, "Must be a list.")
    return []


def _as_object(value: Any, path: str, problems: Problems) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    problems.error(path, "Must be an object.")
    return None


# Bookkeeping an Unleash export carries that does not change evaluation: dropped quietly.
_METADATA = frozenset(
    {
        "id",
        "sortOrder",
        "createdAt",
        "createdBy",
        "lastSeenAt",
        "favorite",
        "archived",
        "archivedAt",
        "project",
    }
)


def _unknown_keys(
    raw: Mapping[str, Any], allowed: Iterable[str], path: str, problems: Problems, strict: bool
) -> None:
    allowed = tuple(allowed)
    for key in raw:
        if key not in allowed and not (not strict and key in _METADATA):
            if strict:
                problems.error(
                    _join(path, key),
                    f"Unknown field; expected one of: {', '.join(sorted(allowed))}.",
                )
            else:
                problems.warn(_join(path, key), "unknown field, not stored")


def check_name(value: Any, path: str, problems: Problems, *, allow_reserved: bool = False) -> str:
    name = _as_string(value, path, problems) or ""
    if not isinstance(value, str):
        return name
    if not name:
        problems.error(path, "A name is required.")
    elif len(name) > NAME_MAX:
        problems.error(path, f"At most {NAME_MAX} characters.")
    elif _WHITESPACE_OR_CONTROL.search(name):
        problems.error(path, "No spaces or control characters: SDKs look flags up by exact name.")
    elif (problem := name_problem(name)) is not None:
        problems.error(path, problem)
    elif not allow_reserved and name.startswith(RESERVED_PREFIX):
        problems.error(
            path, f"Names starting with {RESERVED_PREFIX!r} are reserved for kill switches."
        )
    return name


# --------------------------------------------------------------------------- constraints


def _check_value(operator: str, value: str, path: str, problems: Problems) -> None:
    """The editor's check of one constraint value (``problems`` may be a scratch sink that
    import mode turns into warnings)."""
    if operator in NUM_OPERATORS:
        text = value.strip()
        if not _NUMBER.match(text) or not math.isfinite(float(text)):
            problems.error(path, "Must be a number, e.g. 12 or 3.5.")
    elif operator in DATE_OPERATORS:
        check_date_time(value, path, problems)
    elif operator in SEMVER_OPERATORS and not _SEMVER.match(value):
        hint = " without the leading v" if value[:1] in ("v", "V") else ""
        problems.error(path, f"Must be a semantic version{hint}, e.g. 1.2.3 or 2.0.0-beta.1.")
    elif operator == "REGEX":
        check_regex(value, path, problems)


def check_date_time(value: str, path: str, problems: Problems) -> None:
    """An RFC 3339 date-time with a time zone offset (``2026-01-31T13:00:00Z``,
    ``…+02:00``): SDKs compare instants, and one without an offset is no instant."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        problems.error(path, "Must be an RFC 3339 date-time, e.g. 2026-01-31T13:00:00Z.")
        return
    if parsed.tzinfo is None:
        problems.error(path, "Give a time zone (Z or +02:00): SDKs compare instants.")
    elif not _RFC3339.match(value):
        problems.error(
            path, "Write it as an RFC 3339 date-time, e.g. 2026-01-31T13:00:00Z or …+02:00."
        )


def check_regex(value: str, path: str, problems: Problems) -> None:
    """A regular expression RE2 compiles: the SDK engines (Rust ``regex`` in Unleash's
    Yggdrasil, ``re2js``) are of the RE2 family, with no look-around and no
    back-references; a pattern they cannot compile never matches."""
    try:
        re2.compile(value, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        problems.error(
            path,
            f"Not a regular expression the SDKs evaluate ({detail}): they use RE2 syntax, "
            "with no look-ahead, look-behind or back-references.",
        )


def _sink(problems: Problems, ctx: Context) -> Problems:
    """Where the editor's value checks report: the real problems in strict mode, a
    scratch list in import mode (turned into warnings by ``_warn_from``)."""
    return problems if ctx.strict else Problems()


def _warn_from(sink: Problems, problems: Problems, consequence: str) -> None:
    if sink is problems:
        return
    for path, messages in sink.errors.items():
        for message in messages:
            problems.warn(path, f"{message.rstrip('.')}; {consequence}")


def normalize_constraint(raw: Any, path: str, problems: Problems, ctx: Context) -> dict[str, Any]:
    obj = _as_object(raw, path, problems)
    if obj is None:
        return {}
    _unknown_keys(
        obj,
        ("contextName", "operator", "values", "value", "caseInsensitive", "inverted"),
        path,
        problems,
        ctx.strict,
    )
    context_name = _as_string(obj.get("contextName"), _join(path, "contextName"), problems) or ""
    if isinstance(obj.get("contextName"), str) and not context_name.strip():
        problems.error(_join(path, "contextName"), "Name the context field, e.g. userId or email.")
    elif len(context_name) > 100:
        problems.error(_join(path, "contextName"), "At most 100 characters.")
    operator = _as_string(obj.get("operator"), _join(path, "operator"), problems) or ""
    if operator not in OPERATORS:
        message = f"Unknown operator {operator!r}; use one of: {', '.join(OPERATORS)}."
        if ctx.strict or not operator:
            problems.error(_join(path, "operator"), message)
        else:
            problems.warn(_join(path, "operator"), f"{message} SDKs evaluate it as false")
    result: dict[str, Any] = {"contextName": context_name, "operator": operator}

    values: list[str] = []
    for i, item in enumerate(_as_list(obj.get("values"), _join(path, "values"), problems)):
        text = _as_string(item, _join(_join(path, "values"), i), problems)
        if text is not None:
            values.append(text)
    value = None
    if obj.get("value") is not None:
        value = _as_string(obj["value"], _join(path, "value"), problems)

    sink = _sink(problems, ctx)
    if operator in LIST_OPERATORS:
        if value:  # an empty "value" beside "values" is how some exports write nothing
            sink.error(_join(path, "value"), f"{operator} takes a list: use values.")
        if not values:
            sink.error(_join(path, "values"), "Add at least one value.")
        if operator == "IN_CIDR":
            for i, item in enumerate(values):
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    sink.error(
                        _join(_join(path, "values"), i),
                        "Must be an IP address or a CIDR range, e.g. 10.0.0.0/8.",
                    )
    elif operator in VALUE_OPERATORS:
        if values and (ctx.strict or value is not None):
            sink.error(_join(path, "values"), f"{operator} compares one value: use value.")
        if value is None or value == "":
            sink.error(_join(path, "value"), "A value is required.")
        else:
            _check_value(operator, value, _join(path, "value"), sink)
    inverted = obj.get("inverted") is True or operator == "NOT_IN"
    _warn_from(
        sink,
        problems,
        # A broken constraint is false; inverted (or NOT_IN of nothing) it is true for all.
        "SDKs evaluate this constraint the same for every context"
        if inverted
        else "SDKs evaluate this constraint as false",
    )

    if "values" in obj or operator in LIST_OPERATORS:
        result["values"] = values
    if value is not None:
        result["value"] = value
    result["caseInsensitive"] = _as_bool(
        _given(obj, "caseInsensitive", False), _join(path, "caseInsensitive"), problems
    )
    result["inverted"] = _as_bool(_given(obj, "inverted", False), _join(path, "inverted"), problems)
    return result


def normalize_constraints(
    raw: Any, path: str, problems: Problems, ctx: Context
) -> list[dict[str, Any]]:
    return [
        normalize_constraint(item, _join(path, i), problems, ctx)
        for i, item in enumerate(_as_list(raw, path, problems))
    ]


# --------------------------------------------------------------------------- variants


def _normalize_payload(
    raw: Any, path: str, problems: Problems, ctx: Context
) -> dict[str, str] | None:
    obj = _as_object(raw, path, problems)
    if obj is None:
        return None
    _unknown_keys(obj, ("type", "value"), path, problems, ctx.strict)
    kind = _as_string(obj.get("type"), _join(path, "type"), problems) or ""
    value = _as_string(obj.get("value", ""), _join(path, "value"), problems) or ""
    sink = _sink(problems, ctx)
    if kind not in PAYLOAD_TYPES:
        problems.error(_join(path, "type"), f"Use one of: {', '.join(PAYLOAD_TYPES)}.")
    elif kind == "json":
        try:
            json.loads(value)
        except (ValueError, RecursionError) as exc:  # deep nesting is a RecursionError
            sink.error(_join(path, "value"), f"Not valid JSON: {exc or 'nested too deep'}.")
    elif kind == "number" and not _NUMBER.match(value.strip()):
        sink.error(_join(path, "value"), "Must be a number.")
    _warn_from(sink, problems, "SDKs hand it to the application as is")
    return {"type": kind, "value": value}


def _normalize_override(raw: Any, path: str, problems: Problems, ctx: Context) -> dict[str, Any]:
    obj = _as_object(raw, path, problems) or {}
    _unknown_keys(obj, ("contextName", "values"), path, problems, ctx.strict)
    context_name = _as_string(obj.get("contextName"), _join(path, "contextName"), problems) or ""
    if isinstance(obj.get("contextName"), str) and not context_name.strip():
        problems.error(_join(path, "contextName"), "Name the context field, e.g. userId.")
    values = [
        v
        for i, item in enumerate(_as_list(obj.get("values"), _join(path, "values"), problems))
        if (v := _as_string(item, _join(_join(path, "values"), i), problems)) is not None
    ]
    if ctx.strict and not values:
        problems.error(_join(path, "values"), "Add at least one value.")
    return {"contextName": context_name, "values": values}


def normalize_variants(
    raw: Any, path: str, problems: Problems, ctx: Context, *, strategy: bool = False
) -> list[dict[str, Any]]:
    """Feature variants (with overrides) or strategy variants. In strict mode the weights of
    ``variable`` variants are computed, as Unleash does: what the ``fix`` ones leave of
    1000, shared evenly."""
    allowed = ["name", "weight", "weightType", "stickiness", "payload"] + (
        [] if strategy else ["overrides"]
    )
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(_as_list(raw, path, problems)):
        vpath = _join(path, i)
        obj = _as_object(item, vpath, problems)
        if obj is None:
            continue
        _unknown_keys(obj, allowed, vpath, problems, ctx.strict)
        name = _as_string(obj.get("name"), _join(vpath, "name"), problems) or ""
        if isinstance(obj.get("name"), str):
            if not name.strip():
                problems.error(_join(vpath, "name"), "A variant needs a name.")
            elif len(name) > NAME_MAX:
                problems.error(_join(vpath, "name"), f"At most {NAME_MAX} characters.")
            elif name in seen:
                problems.error(_join(vpath, "name"), f"Variant {name!r} is listed twice.")
            seen.add(name)
        weight_type = _given(obj, "weightType", "variable")
        if weight_type not in WEIGHT_TYPES:
            problems.error(_join(vpath, "weightType"), "Use variable or fix.")
        weight = obj.get("weight", 0 if weight_type == "variable" and ctx.strict else None)
        if isinstance(weight, bool) or not isinstance(weight, int):
            problems.error(_join(vpath, "weight"), f"A whole number between 0 and {TOTAL_WEIGHT}.")
            weight = 0
        elif not 0 <= weight <= TOTAL_WEIGHT:
            problems.error(_join(vpath, "weight"), f"Between 0 and {TOTAL_WEIGHT}.")
        stickiness = (
            _as_string(_given(obj, "stickiness", "default"), _join(vpath, "stickiness"), problems)
            or ""
        )
        if isinstance(_given(obj, "stickiness", "default"), str) and not stickiness.strip():
            problems.error(
                _join(vpath, "stickiness"),
                "Use default, userId, sessionId, random or a context field.",
            )
        variant: dict[str, Any] = {
            "name": name,
            "weight": weight,
            "weightType": weight_type,
            "stickiness": stickiness,
        }
        if obj.get("payload") is not None:
            payload = _normalize_payload(obj["payload"], _join(vpath, "payload"), problems, ctx)
            if payload is not None:
                variant["payload"] = payload
        if not strategy and obj.get("overrides"):
            variant["overrides"] = [
                _normalize_override(o, _join(_join(vpath, "overrides"), j), problems, ctx)
                for j, o in enumerate(
                    _as_list(obj["overrides"], _join(vpath, "overrides"), problems)
                )
            ]
        result.append(variant)
    if ctx.strict and result and not problems.errors:
        _distribute_weights(result, path, problems)
    return result


def _distribute_weights(variants: list[dict[str, Any]], path: str, problems: Problems) -> None:
    fixed = sum(v["weight"] for v in variants if v["weightType"] == "fix")
    variable = [v for v in variants if v["weightType"] == "variable"]
    if fixed > TOTAL_WEIGHT:
        problems.error(path, f"Fixed weights add up to {fixed}; at most {TOTAL_WEIGHT}.")
        return
    if not variable:
        if fixed != TOTAL_WEIGHT:
            problems.error(
                path,
                f"Fixed weights add up to {fixed}; with no variable variant "
                f"they must make {TOTAL_WEIGHT}.",
            )
        return
    share, left = divmod(TOTAL_WEIGHT - fixed, len(variable))
    for i, variant in enumerate(variable):
        variant["weight"] = share + (1 if i < left else 0)


# --------------------------------------------------------------------------- strategies


def _check_percent(value: str, path: str, problems: Problems) -> None:
    if not value.strip().isdigit() or not 0 <= int(value.strip()) <= 100:
        problems.error(path, "A whole percentage between 0 and 100.")


def _check_list_parameter(name: str, value: str, path: str, problems: Problems) -> None:
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        problems.error(path, "Give at least one, comma-separated.")
        return
    if any(not item for item in items):
        problems.error(path, "An empty entry: remove the extra comma.")
    if name == "IPs":
        for item in items:
            if not item:
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                problems.error(path, f"{item!r} is not an IP address or a CIDR range.")


def normalize_strategy(raw: Any, path: str, problems: Problems, ctx: Context) -> dict[str, Any]:
    obj = _as_object(raw, path, problems)
    if obj is None:
        return {}
    _unknown_keys(
        obj,
        ("name", "title", "parameters", "constraints", "segments", "variants")
        + (() if ctx.strict else ("disabled",)),
        path,
        problems,
        ctx.strict,
    )
    name = _as_string(obj.get("name"), _join(path, "name"), problems) or ""
    if name not in STRATEGIES:
        message = f"Unknown strategy {name!r}; use one of: {', '.join(STRATEGIES)}."
        if ctx.strict or not name:
            problems.error(_join(path, "name"), message)
        else:
            problems.warn(
                _join(path, "name"),
                f"custom strategy {name!r}: SDKs without it evaluate it as false",
            )
    parameters: dict[str, str] = {}
    raw_parameters = obj.get("parameters") or {}
    ppath = _join(path, "parameters")
    if _as_object(raw_parameters, ppath, problems) is not None:
        for key, value in raw_parameters.items():
            text = _as_string(value, _join(ppath, key), problems)
            if text is not None:
                parameters[str(key)] = text
    if name in STRATEGIES:
        required, optional = STRATEGIES[name]
        if ctx.strict:  # an extra parameter changes nothing an SDK does: import keeps it quietly
            for key in parameters:
                if key not in required + optional:
                    expected = ", ".join(required + optional) or "none"
                    problems.error(
                        _join(ppath, key),
                        f"{name} takes no parameter {key!r} (it takes: {expected}).",
                    )
        sink = _sink(problems, ctx)
        for key in required:
            if key not in parameters:
                sink.error(_join(ppath, key), "Required.")
        for key in PERCENT_PARAMETERS:
            if key in parameters:
                _check_percent(parameters[key], _join(ppath, key), sink)
        for key in ("userIds", "IPs", "hostNames"):
            if key in parameters:
                _check_list_parameter(key, parameters[key], _join(ppath, key), sink)
        _warn_from(sink, problems, "the editor refuses this; SDKs may evaluate it as false")
        if ctx.strict and name == "flexibleRollout":
            parameters.setdefault("stickiness", "default")
            if not parameters["stickiness"].strip():
                problems.error(
                    _join(ppath, "stickiness"),
                    "Use default, userId, sessionId, random or a context field.",
                )
        if ctx.strict and "groupId" in optional and not parameters.get("groupId", "").strip():
            parameters["groupId"] = ctx.flag_name  # Unleash's default: the flag's own name
    result: dict[str, Any] = {"name": name}
    if obj.get("title"):
        result["title"] = _as_string(obj["title"], _join(path, "title"), problems) or ""
    result["parameters"] = parameters
    result["constraints"] = normalize_constraints(
        obj.get("constraints"), _join(path, "constraints"), problems, ctx
    )
    segments: list[int] = []
    for i, item in enumerate(_as_list(obj.get("segments"), _join(path, "segments"), problems)):
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            problems.error(
                _join(_join(path, "segments"), i), "A segment id (a positive whole number)."
            )
        elif ctx.segment_ids is not None and item not in ctx.segment_ids:
            if ctx.strict:
                problems.error(
                    _join(_join(path, "segments"), i), f"No segment {item} in this environment."
                )
            else:
                problems.warn(
                    _join(_join(path, "segments"), i),
                    f"segment {item} does not exist: SDKs evaluate the strategy as false",
                )
            segments.append(item)
        else:
            segments.append(item)
    result["segments"] = segments
    result["variants"] = normalize_variants(
        obj.get("variants"), _join(path, "variants"), problems, ctx, strategy=True
    )
    return result


def normalize_strategies(
    raw: Any, path: str, problems: Problems, ctx: Context
) -> list[dict[str, Any]]:
    result = []
    for i, item in enumerate(_as_list(raw, path, problems)):
        if not ctx.strict and isinstance(item, dict) and item.get("disabled") is True:
            problems.warn(_join(path, i), "a disabled strategy is never evaluated: not stored")
            continue
        result.append(normalize_strategy(item, _join(path, i), problems, ctx))
    return result


# --------------------------------------------------------------------------- dependencies


def normalize_dependencies(
    raw: Any, path: str, problems: Problems, ctx: Context
) -> list[dict[str, Any]]:
    """Unleash allows one level: a flag may depend on parents that have no parents."""
    result: list[dict[str, Any]] = []
    for i, item in enumerate(_as_list(raw, path, problems)):
        dpath = _join(path, i)
        obj = _as_object(item, dpath, problems)
        if obj is None:
            continue
        _unknown_keys(obj, ("feature", "enabled", "variants"), dpath, problems, ctx.strict)
        parent = _as_string(obj.get("feature"), _join(dpath, "feature"), problems) or ""
        enabled = _as_bool(_given(obj, "enabled", True), _join(dpath, "enabled"), problems)
        dependency: dict[str, Any] = {"feature": parent, "enabled": enabled}
        if obj.get("variants"):
            dependency["variants"] = [
                v
                for j, item2 in enumerate(
                    _as_list(obj["variants"], _join(dpath, "variants"), problems)
                )
                if (v := _as_string(item2, _join(_join(dpath, "variants"), j), problems))
                is not None
            ]
        if not parent:
            problems.error(_join(dpath, "feature"), "Name the parent flag.")
        elif parent == ctx.flag_name:
            problems.error(_join(dpath, "feature"), "A flag cannot depend on itself.")
        elif ctx.strict and ctx.flags is not None:
            if parent not in ctx.flags:
                problems.error(_join(dpath, "feature"), f"No flag {parent!r} in this environment.")
            elif ctx.flags[parent]:
                problems.error(
                    _join(dpath, "feature"),
                    f"{parent!r} depends on other flags itself; Unleash allows one level.",
                )
        if ctx.strict and dependency.get("variants") and not enabled:
            problems.error(
                _join(dpath, "variants"), "Variants only apply when the parent must be enabled."
            )
        result.append(dependency)
    if ctx.strict and ctx.flags is not None and result:
        dependants = [
            name
            for name, deps in ctx.flags.items()
            if any(d.get("feature") == ctx.flag_name for d in deps)
        ]
        if dependants:
            problems.error(
                path,
                f"{', '.join(sorted(dependants))} depend(s) on this flag; "
                "Unleash allows one level.",
            )
    return result


# --------------------------------------------------------------------------- features and segments


FEATURE_KEYS = (
    "name",
    "description",
    "type",
    "enabled",
    "impressionData",
    "project",
    "stale",
    "strategies",
    "variants",
    "dependencies",
)


def normalize_feature(raw: Any, path: str, problems: Problems, ctx: Context) -> dict[str, Any]:
    """One feature in the stored (and served) shape."""
    obj = _as_object(raw, path, problems)
    if obj is None:
        return {}
    _unknown_keys(obj, FEATURE_KEYS, path, problems, ctx.strict)
    if ctx.name_fixed and isinstance(obj.get("name"), str):
        name = obj["name"]
    else:
        name = check_name(obj.get("name"), _join(path, "name"), problems)
    ctx = Context(strict=ctx.strict, flag_name=name, segment_ids=ctx.segment_ids, flags=ctx.flags)
    description = obj.get("description")
    kind = obj.get("type") or "release"
    if kind not in FLAG_TYPES:
        problems.error(_join(path, "type"), f"Use one of: {', '.join(FLAG_TYPES)}.")
    project = obj.get("project") or "default"
    feature = {
        "name": name,
        "description": ""
        if description is None
        else (_as_string(description, _join(path, "description"), problems) or ""),
        "type": kind,
        "enabled": _as_bool(_given(obj, "enabled", False), _join(path, "enabled"), problems),
        "impressionData": _as_bool(
            _given(obj, "impressionData", False), _join(path, "impressionData"), problems
        ),
        "project": _as_string(project, _join(path, "project"), problems) or "default",
        "stale": _as_bool(_given(obj, "stale", False), _join(path, "stale"), problems),
        "strategies": normalize_strategies(
            obj.get("strategies"), _join(path, "strategies"), problems, ctx
        ),
        "variants": normalize_variants(obj.get("variants"), _join(path, "variants"), problems, ctx),
        "dependencies": normalize_dependencies(
            obj.get("dependencies"), _join(path, "dependencies"), problems, ctx
        ),
    }
    return feature


def normalize_segment(raw: Any, path: str, problems: Problems, ctx: Context) -> dict[str, Any]:
    obj = _as_object(raw, path, problems)
    if obj is None:
        return {}
    _unknown_keys(obj, ("id", "name", "description", "constraints"), path, problems, ctx.strict)
    segment_id = obj.get("id")
    if isinstance(segment_id, bool) or not isinstance(segment_id, int) or segment_id < 1:
        problems.error(_join(path, "id"), "A segment id (a positive whole number).")
        segment_id = 0
    name = obj.get("name") or ""
    if not isinstance(name, str) or len(name) > NAME_MAX:
        problems.error(_join(path, "name"), f"A name of at most {NAME_MAX} characters.")
        name = ""
    description = obj.get("description") or ""
    if not isinstance(description, str):
        problems.error(_join(path, "description"), "Must be a string.")
        description = ""
    constraints = normalize_constraints(
        obj.get("constraints"), _join(path, "constraints"), problems, ctx
    )
    if ctx.strict and not constraints:
        problems.error(_join(path, "constraints"), "A segment needs at least one constraint.")
    return {"id": segment_id, "name": name, "description": description, "constraints": constraints}


# --------------------------------------------------------------------------- SDK metrics

# At most this many evaluations of one flag (or variant) in one SDK bucket: far above what
# an SDK counts in its interval (about a minute), far below the bigint the hourly totals are
# kept in, so no bucket can push a total past it (the upsert saturates there besides).
MAX_BUCKET_COUNT = 10**12
MAX_BUCKET_FLAGS = 10_000
MAX_BUCKET_VARIANTS = 200
_COUNT_TEXT = re.compile(r"^\s*\d+\s*$")


def _metric_count(value: Any, path: str, problems: Problems) -> int:
    """One evaluation count: ``null`` or absent is 0 (an SDK with nothing to say), a whole
    number (or its decimal text) is taken; negative, fractional or oversized ones are
    refused at ``path``."""
    if value is None:
        return 0
    count: int | None = None
    if isinstance(value, bool):
        count = None
    elif isinstance(value, int):
        count = value
    elif isinstance(value, float | Decimal):
        count = int(value) if math.isfinite(value) and value == int(value) else None
    elif isinstance(value, str) and len(value) <= 40 and _COUNT_TEXT.match(value):
        count = int(value)
    if count is None:
        problems.error(path, "A whole number of evaluations.")
        return 0
    if count < 0:
        problems.error(path, "Must be at least 0.")
        return 0
    if count > MAX_BUCKET_COUNT:
        problems.error(path, f"At most {MAX_BUCKET_COUNT:,} evaluations per bucket.")
        return 0
    return count


def _metric_name(name: str) -> str | None:
    if not name or len(name) > NAME_MAX:
        return f"Names have 1 to {NAME_MAX} characters."
    return hidden_character_message(name)


@dataclass
class MetricsToggles:
    """What ``parse_metrics_toggles`` read: the counts to add, the errors by field, the
    flag names refused, and whether the whole ``toggles`` was unusable."""

    counted: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)
    refused: list[str] = field(default_factory=list)
    unusable: bool = False


def parse_metrics_toggles(raw: Any, path: str = "bucket.toggles") -> MetricsToggles:
    """The ``toggles`` of an Unleash metrics bucket (``{flag: {"yes": n, "no": n,
    "variants": {name: n}}}``), read liberally where the meaning is plain (``null`` counts,
    ``"variants": null`` and a ``null`` entry are none) and each flag on its own: a flag
    whose entry is wrong is left out with errors at ``bucket.toggles.<flag>.<field>``, the
    others are counted as ``{flag: {"yes": int, "no": int, "variants": {name: int}}}``."""
    result = MetricsToggles()
    problems = result.problems
    if raw is None:
        return result
    if not isinstance(raw, dict):
        problems.error(path, "Must be an object: flag name -> counts.")
        result.unusable = True
        return result
    if len(raw) > MAX_BUCKET_FLAGS:
        problems.error(path, f"At most {MAX_BUCKET_FLAGS:,} flags per bucket.")
        result.unusable = True
        return result
    counted = result.counted
    for name, entry in raw.items():
        epath = _join(path, str(name)[:NAME_MAX])
        mine = Problems()
        if (message := _metric_name(name)) is not None:
            mine.error(epath, message)
        entry = {} if entry is None else entry
        if not isinstance(entry, dict):
            mine.error(epath, 'Must be an object: {"yes": n, "no": n, "variants": {…}}.')
            entry = {}
        yes = _metric_count(entry.get("yes"), _join(epath, "yes"), mine)
        no = _metric_count(entry.get("no"), _join(epath, "no"), mine)
        variants: dict[str, int] = {}
        raw_variants = entry.get("variants")
        vpath = _join(epath, "variants")
        if raw_variants is not None and not isinstance(raw_variants, dict):
            mine.error(vpath, "Must be an object: variant name -> count.")
        elif raw_variants:
            if len(raw_variants) > MAX_BUCKET_VARIANTS:
                mine.error(vpath, f"At most {MAX_BUCKET_VARIANTS} variants per flag.")
            else:
                for variant, count in raw_variants.items():
                    if (message := _metric_name(variant)) is not None:
                        mine.error(_join(vpath, str(variant)[:NAME_MAX]), message)
                    variants[variant] = _metric_count(
                        count, _join(vpath, str(variant)[:NAME_MAX]), mine
                    )
        if mine.errors:
            for key, messages in mine.errors.items():
                problems.errors.setdefault(key, []).extend(messages)
            result.refused.append(name)
            continue
        counted[name] = {"yes": yes, "no": no, "variants": variants}
    return result
