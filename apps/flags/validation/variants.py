"""Variants of a feature (with overrides) or of a strategy: names, weights (the
``variable`` ones share what the ``fix`` ones leave of 1000, as Unleash computes them) and
payloads."""

from __future__ import annotations

import json
from typing import Any

from .coerce import as_list, as_object, as_string, given, unknown_keys
from .names import NAME_MAX
from .numbers import NUMBER
from .report import Context, Problems, join, value_sink, warn_from

PAYLOAD_TYPES = ("string", "json", "csv", "number")
WEIGHT_TYPES = ("variable", "fix")
TOTAL_WEIGHT = 1000


def _normalize_payload(
    raw: Any, path: str, problems: Problems, ctx: Context
) -> dict[str, str] | None:
    obj = as_object(raw, path, problems)
    if obj is None:
        return None
    unknown_keys(obj, ("type", "value"), path, problems, ctx.strict)
    kind = as_string(obj.get("type"), join(path, "type"), problems) or ""
    value = as_string(obj.get("value", ""), join(path, "value"), problems) or ""
    sink = value_sink(problems, ctx)
    if kind not in PAYLOAD_TYPES:
        problems.error(join(path, "type"), f"must be one of: {', '.join(PAYLOAD_TYPES)}.")
    elif kind == "json":
        try:
            json.loads(value)
        except (ValueError, RecursionError) as exc:  # deep nesting is a RecursionError
            sink.error(join(path, "value"), f"Not valid JSON: {exc or 'nested too deep'}.")
    elif kind == "number" and not NUMBER.match(value.strip()):
        sink.error(join(path, "value"), "must be a number.")
    warn_from(sink, problems, "SDKs hand it to the application as is")
    return {"type": kind, "value": value}


def _normalize_override(raw: Any, path: str, problems: Problems, ctx: Context) -> dict[str, Any]:
    obj = as_object(raw, path, problems) or {}
    unknown_keys(obj, ("contextName", "values"), path, problems, ctx.strict)
    context_name = as_string(obj.get("contextName"), join(path, "contextName"), problems) or ""
    if isinstance(obj.get("contextName"), str) and not context_name.strip():
        problems.error(join(path, "contextName"), "Name the context field, e.g. userId.")
    values = [
        v
        for i, item in enumerate(as_list(obj.get("values"), join(path, "values"), problems))
        if (v := as_string(item, join(join(path, "values"), i), problems)) is not None
    ]
    if ctx.strict and not values:
        problems.error(join(path, "values"), "are required: at least one.")
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
    for i, item in enumerate(as_list(raw, path, problems)):
        vpath = join(path, i)
        obj = as_object(item, vpath, problems)
        if obj is None:
            continue
        unknown_keys(obj, allowed, vpath, problems, ctx.strict)
        name = as_string(obj.get("name"), join(vpath, "name"), problems) or ""
        if isinstance(obj.get("name"), str):
            if not name.strip():
                problems.error(join(vpath, "name"), "A variant needs a name.")
            elif len(name) > NAME_MAX:
                problems.error(join(vpath, "name"), f"must be at most {NAME_MAX} characters.")
            elif name in seen:
                problems.error(join(vpath, "name"), f"Variant {name!r} is listed twice.")
            seen.add(name)
        weight_type = given(obj, "weightType", "variable")
        if weight_type not in WEIGHT_TYPES:
            problems.error(join(vpath, "weightType"), "must be variable or fix.")
        weight = obj.get("weight", 0 if weight_type == "variable" and ctx.strict else None)
        if isinstance(weight, bool) or not isinstance(weight, int):
            problems.error(
                join(vpath, "weight"), f"must be a whole number from 0 to {TOTAL_WEIGHT}."
            )
            weight = 0
        elif not 0 <= weight <= TOTAL_WEIGHT:
            problems.error(
                join(vpath, "weight"), f"must be a whole number from 0 to {TOTAL_WEIGHT}."
            )
        stickiness = (
            as_string(given(obj, "stickiness", "default"), join(vpath, "stickiness"), problems)
            or ""
        )
        if isinstance(given(obj, "stickiness", "default"), str) and not stickiness.strip():
            problems.error(
                join(vpath, "stickiness"),
                "must be default, userId, sessionId, random or a context field.",
            )
        variant: dict[str, Any] = {
            "name": name,
            "weight": weight,
            "weightType": weight_type,
            "stickiness": stickiness,
        }
        if obj.get("payload") is not None:
            payload = _normalize_payload(obj["payload"], join(vpath, "payload"), problems, ctx)
            if payload is not None:
                variant["payload"] = payload
        if not strategy and obj.get("overrides"):
            variant["overrides"] = [
                _normalize_override(o, join(join(vpath, "overrides"), j), problems, ctx)
                for j, o in enumerate(as_list(obj["overrides"], join(vpath, "overrides"), problems))
            ]
        result.append(variant)
    if ctx.strict and result and not problems.errors:
        _distribute_weights(result, path, problems)
    return result


def _distribute_weights(variants: list[dict[str, Any]], path: str, problems: Problems) -> None:
    fixed = sum(v["weight"] for v in variants if v["weightType"] == "fix")
    variable = [v for v in variants if v["weightType"] == "variable"]
    if fixed > TOTAL_WEIGHT:
        problems.error(
            path, f"Fixed weights add up to {fixed}; they may add up to {TOTAL_WEIGHT} at most."
        )
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
