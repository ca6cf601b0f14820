"""Dependencies between flags: a parent that exists, is not the flag itself, and has no
parents of its own (Unleash allows one level)."""

from __future__ import annotations

from typing import Any

from .coerce import as_bool, as_list, as_object, as_string, given, unknown_keys
from .report import Context, Problems, join


def normalize_dependencies(
    raw: Any, path: str, problems: Problems, ctx: Context
) -> list[dict[str, Any]]:
    """Unleash allows one level: a flag may depend on parents that have no parents."""
    result: list[dict[str, Any]] = []
    for i, item in enumerate(as_list(raw, path, problems)):
        dpath = join(path, i)
        obj = as_object(item, dpath, problems)
        if obj is None:
            continue
        unknown_keys(obj, ("feature", "enabled", "variants"), dpath, problems, ctx.strict)
        parent = as_string(obj.get("feature"), join(dpath, "feature"), problems) or ""
        enabled = as_bool(given(obj, "enabled", True), join(dpath, "enabled"), problems)
        dependency: dict[str, Any] = {"feature": parent, "enabled": enabled}
        if obj.get("variants"):
            dependency["variants"] = [
                v
                for j, item2 in enumerate(
                    as_list(obj["variants"], join(dpath, "variants"), problems)
                )
                if (v := as_string(item2, join(join(dpath, "variants"), j), problems)) is not None
            ]
        if not parent:
            problems.error(join(dpath, "feature"), "Name the parent flag.")
        elif parent == ctx.flag_name:
            problems.error(join(dpath, "feature"), "A flag cannot depend on itself.")
        elif ctx.strict and ctx.flags is not None:
            if parent not in ctx.flags:
                problems.error(join(dpath, "feature"), f"No flag {parent!r} in this environment.")
            elif ctx.flags[parent]:
                problems.error(
                    join(dpath, "feature"),
                    f"{parent!r} depends on other flags itself; Unleash allows one level.",
                )
        if ctx.strict and dependency.get("variants") and not enabled:
            problems.error(
                join(dpath, "variants"), "Variants only apply when the parent must be enabled."
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
