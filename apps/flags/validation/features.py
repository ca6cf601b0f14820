"""Whole documents: a feature (the stored and served shape, everything above put
together) and a segment (a named, shared list of constraints)."""

from __future__ import annotations

from typing import Any

from .coerce import as_bool, as_object, as_string, given, unknown_keys
from .constraints import normalize_constraints
from .dependencies import normalize_dependencies
from .names import FLAG_TYPES, NAME_MAX, check_name
from .report import Context, Problems, join
from .strategies import normalize_strategies
from .variants import normalize_variants

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
    obj = as_object(raw, path, problems)
    if obj is None:
        return {}
    unknown_keys(obj, FEATURE_KEYS, path, problems, ctx.strict)
    if ctx.name_fixed and isinstance(obj.get("name"), str):
        name = obj["name"]
    else:
        name = check_name(obj.get("name"), join(path, "name"), problems)
    ctx = Context(strict=ctx.strict, flag_name=name, segment_ids=ctx.segment_ids, flags=ctx.flags)
    description = obj.get("description")
    kind = obj.get("type") or "release"
    if kind not in FLAG_TYPES:
        problems.error(join(path, "type"), f"must be one of: {', '.join(FLAG_TYPES)}.")
    project = obj.get("project") or "default"
    feature = {
        "name": name,
        "description": ""
        if description is None
        else (as_string(description, join(path, "description"), problems) or ""),
        "type": kind,
        "enabled": as_bool(given(obj, "enabled", False), join(path, "enabled"), problems),
        "impressionData": as_bool(
            given(obj, "impressionData", False), join(path, "impressionData"), problems
        ),
        "project": as_string(project, join(path, "project"), problems) or "default",
        "stale": as_bool(given(obj, "stale", False), join(path, "stale"), problems),
        "strategies": normalize_strategies(
            obj.get("strategies"), join(path, "strategies"), problems, ctx
        ),
        "variants": normalize_variants(obj.get("variants"), join(path, "variants"), problems, ctx),
        "dependencies": normalize_dependencies(
            obj.get("dependencies"), join(path, "dependencies"), problems, ctx
        ),
    }
    return feature


def normalize_segment(raw: Any, path: str, problems: Problems, ctx: Context) -> dict[str, Any]:
    """One segment (``id``, ``name``, ``description``, ``constraints``); strict mode wants
    at least one constraint."""
    obj = as_object(raw, path, problems)
    if obj is None:
        return {}
    unknown_keys(obj, ("id", "name", "description", "constraints"), path, problems, ctx.strict)
    segment_id = obj.get("id")
    if isinstance(segment_id, bool) or not isinstance(segment_id, int) or segment_id < 1:
        problems.error(join(path, "id"), "must be a segment id (a positive whole number).")
        segment_id = 0
    name = obj.get("name") or ""
    if not isinstance(name, str) or len(name) > NAME_MAX:
        problems.error(join(path, "name"), f"must be a name of at most {NAME_MAX} characters.")
        name = ""
    description = obj.get("description") or ""
    if not isinstance(description, str):
        problems.error(join(path, "description"), "must be a string.")
        description = ""
    constraints = normalize_constraints(
        obj.get("constraints"), join(path, "constraints"), problems, ctx
    )
    if ctx.strict and not constraints:
        problems.error(join(path, "constraints"), "A segment needs at least one constraint.")
    return {"id": segment_id, "name": name, "description": description, "constraints": constraints}
