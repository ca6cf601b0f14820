"""Activation strategies: the built-in ones the SDKs evaluate with their parameters,
custom ones (kept on import, with a warning), and their constraints, segments and variants."""

from __future__ import annotations

from typing import Any

from .coerce import as_list, as_object, as_string, unknown_keys
from .constraints import normalize_constraints
from .report import Context, Problems, join, value_sink, warn_from
from .values import check_list_parameter, check_percent
from .variants import normalize_variants

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


def normalize_strategy(raw: Any, path: str, problems: Problems, ctx: Context) -> dict[str, Any]:
    """One strategy in the stored shape: a built-in one with its parameters checked (and
    ``stickiness``/``groupId`` defaulted in strict mode), or a custom one kept on import."""
    obj = as_object(raw, path, problems)
    if obj is None:
        return {}
    unknown_keys(
        obj,
        ("name", "title", "parameters", "constraints", "segments", "variants")
        + (() if ctx.strict else ("disabled",)),
        path,
        problems,
        ctx.strict,
    )
    name = as_string(obj.get("name"), join(path, "name"), problems) or ""
    if name not in STRATEGIES:
        message = f"Unknown strategy {name!r}; use one of: {', '.join(STRATEGIES)}."
        if ctx.strict or not name:
            problems.error(join(path, "name"), message)
        else:
            problems.warn(
                join(path, "name"),
                f"custom strategy {name!r}: SDKs without it evaluate it as false",
            )
    parameters: dict[str, str] = {}
    raw_parameters = obj.get("parameters") or {}
    ppath = join(path, "parameters")
    if as_object(raw_parameters, ppath, problems) is not None:
        for key, value in raw_parameters.items():
            text = as_string(value, join(ppath, key), problems)
            if text is not None:
                parameters[str(key)] = text
    if name in STRATEGIES:
        required, optional = STRATEGIES[name]
        if ctx.strict:  # an extra parameter changes nothing an SDK does: import keeps it quietly
            for key in parameters:
                if key not in required + optional:
                    expected = ", ".join(required + optional) or "none"
                    problems.error(
                        join(ppath, key),
                        f"{name} takes no parameter {key!r} (it takes: {expected}).",
                    )
        sink = value_sink(problems, ctx)
        for key in required:
            if key not in parameters:
                sink.error(join(ppath, key), f"is required for {name}.")
        for key in PERCENT_PARAMETERS:
            if key in parameters:
                check_percent(parameters[key], join(ppath, key), sink)
        for key in ("userIds", "IPs", "hostNames"):
            if key in parameters:
                check_list_parameter(key, parameters[key], join(ppath, key), sink)
        warn_from(sink, problems, "the editor refuses this; SDKs may evaluate it as false")
        if ctx.strict and name == "flexibleRollout":
            parameters.setdefault("stickiness", "default")
            if not parameters["stickiness"].strip():
                problems.error(
                    join(ppath, "stickiness"),
                    "must be default, userId, sessionId, random or a context field.",
                )
        if ctx.strict and "groupId" in optional and not parameters.get("groupId", "").strip():
            parameters["groupId"] = ctx.flag_name  # Unleash's default: the flag's own name
    result: dict[str, Any] = {"name": name}
    if obj.get("title"):
        result["title"] = as_string(obj["title"], join(path, "title"), problems) or ""
    result["parameters"] = parameters
    result["constraints"] = normalize_constraints(
        obj.get("constraints"), join(path, "constraints"), problems, ctx
    )
    segments: list[int] = []
    for i, item in enumerate(as_list(obj.get("segments"), join(path, "segments"), problems)):
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            problems.error(
                join(join(path, "segments"), i), "must be a segment id (a positive whole number)."
            )
        elif ctx.segment_ids is not None and item not in ctx.segment_ids:
            if ctx.strict:
                problems.error(
                    join(join(path, "segments"), i), f"No segment {item} in this environment."
                )
            else:
                problems.warn(
                    join(join(path, "segments"), i),
                    f"segment {item} does not exist: SDKs evaluate the strategy as false",
                )
            segments.append(item)
        else:
            segments.append(item)
    result["segments"] = segments
    result["variants"] = normalize_variants(
        obj.get("variants"), join(path, "variants"), problems, ctx, strategy=True
    )
    return result


def normalize_strategies(
    raw: Any, path: str, problems: Problems, ctx: Context
) -> list[dict[str, Any]]:
    """A list of strategies; on import a ``disabled`` one is dropped with a warning."""
    result = []
    for i, item in enumerate(as_list(raw, path, problems)):
        if not ctx.strict and isinstance(item, dict) and item.get("disabled") is True:
            problems.warn(join(path, i), "a disabled strategy is never evaluated: not stored")
            continue
        result.append(normalize_strategy(item, join(path, i), problems, ctx))
    return result
