"""Rollout plans: what a rollout in an environment goes through, and how it is judged.

A plan is a JSON document (stored on ``RolloutPlan.document``, copied onto each rollout when
it starts, so editing the plan never changes a rollout already running):

```
{"shadow": {"percentage": 0, "min_dwell_s": 300, "min_requests": 200},     # 0: no shadow phase
 "steps": [{"percentage": 1, "min_dwell_s": 300, "min_requests": 100, "auto_advance": true},
           {"percentage": 10, ...}, {"percentage": 50, ...}],                # then 100%: completed
 "metrics": [{"metric": "error_rate", "tolerated_ratio": 1.5, "min_effect": 0.005,
              "on_failure": "rollback", "critical": true, "dry_run": false}, ...],
 "failure_limit": 1,
 "alpha": 0.01,
 "guardrail": {"max_error_rate": 0.25, "min_requests": 20},
 "stickiness": "sessionId"}
```

``alpha`` is the false-alarm rate of each metric gate over a whole rollout: the chance that a
healthy candidate is failed on that metric at all (the sequential tests' alpha, Wald 1945 with
Ville's bound: ``apps.rollouts.analysis``). Lower is quieter and slower to catch a regression;
a plan saved before it existed reads the default.

``min_effect`` is the absolute floor a difference must exceed to fail: rate points for rates
(0.005 = 0.5 points), milliseconds for p95 latency, USD for cost per request.

Steps are canary traffic shares below 100%, strictly increasing; advancing past the last one
completes the rollout (the candidate becomes the stable version), and that last advance needs
every critical metric at PASS (Argo Rollouts' "steps", LaunchDarkly's guarded rollout
"stages"). ``plan_validate`` returns the field errors of a document; ``plan_normalised``
fills in defaults."""

from __future__ import annotations

import copy
from typing import Any

# Metrics the analysis knows (apps.rollouts.analysis), with the operator's words.
METRIC_LABELS: dict[str, str] = {
    "error_rate": "error rate",
    "policy_denied_rate": "policy denials",
    "escalated_rate": "escalations",
    "tool_failure_rate": "tool failures",
    "wrong_action_rate": "wrong actions",
    "latency_p95": "p95 latency",
    "cost_per_request": "cost per request",
}
ON_FAILURE = ("rollback", "pause")
STICKINESS = ("sessionId", "userId", "tenantId", "default", "random")
# The false-alarm rates a plan may choose: from one in ten thousand healthy rollouts to one in
# five.
ALPHA_RANGE = (0.0001, 0.2)

DEFAULT_PLAN: dict[str, Any] = {
    "shadow": {"percentage": 0, "min_dwell_s": 300, "min_requests": 200},
    "steps": [
        {"percentage": 1, "min_dwell_s": 300, "min_requests": 100, "auto_advance": True},
        {"percentage": 10, "min_dwell_s": 300, "min_requests": 500, "auto_advance": True},
        {"percentage": 50, "min_dwell_s": 600, "min_requests": 2000, "auto_advance": True},
    ],
    "metrics": [
        {"metric": "error_rate", "tolerated_ratio": 1.5, "min_effect": 0.005,
         "on_failure": "rollback", "critical": True, "dry_run": False},
        {"metric": "policy_denied_rate", "tolerated_ratio": 1.5, "min_effect": 0.005,
         "on_failure": "rollback", "critical": True, "dry_run": False},
        {"metric": "wrong_action_rate", "tolerated_ratio": 1.5, "min_effect": 0.005,
         "on_failure": "rollback", "critical": True, "dry_run": False},
        {"metric": "escalated_rate", "tolerated_ratio": 1.5, "min_effect": 0.01,
         "on_failure": "pause", "critical": False, "dry_run": False},
        {"metric": "tool_failure_rate", "tolerated_ratio": 1.5, "min_effect": 0.01,
         "on_failure": "pause", "critical": False, "dry_run": False},
        {"metric": "latency_p95", "tolerated_ratio": 1.5, "min_effect": 25.0,
         "on_failure": "pause", "critical": False, "dry_run": False},
        {"metric": "cost_per_request", "tolerated_ratio": 1.5, "min_effect": 0.0,
         "on_failure": "pause", "critical": False, "dry_run": True},
    ],
    "failure_limit": 1,
    "alpha": 0.01,
    "guardrail": {"max_error_rate": 0.25, "min_requests": 20},
    "stickiness": "sessionId",
}  # fmt: skip


def default_plan() -> dict[str, Any]:
    """A fresh copy of the default plan (safe to mutate)."""
    return copy.deepcopy(DEFAULT_PLAN)


def _number(
    value: Any, where: str, errors: dict[str, list[str]], *, low: float, high: float, whole: bool
) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.setdefault(where, []).append("Enter a number.")
        return None
    if whole and int(value) != value:
        errors.setdefault(where, []).append("Enter a whole number.")
        return None
    if not low <= value <= high:
        errors.setdefault(where, []).append(f"Enter a value from {low:g} to {high:g}.")
        return None
    return float(value)


def _flag(value: Any, where: str, errors: dict[str, list[str]]) -> None:
    if not isinstance(value, bool):
        errors.setdefault(where, []).append("Enter true or false.")


def plan_validate(document: Any) -> dict[str, list[str]]:
    """Field errors of a plan document (empty: valid), keyed by dotted path
    (``steps.1.percentage``), so a form or an API answer can point at the exact field."""
    errors: dict[str, list[str]] = {}
    if not isinstance(document, dict):
        return {"plan": ["A plan is a JSON object."]}
    unknown = set(document) - set(DEFAULT_PLAN)
    for key in sorted(unknown):
        errors[key] = ["Unknown field."]
    shadow = document.get("shadow", DEFAULT_PLAN["shadow"])
    if not isinstance(shadow, dict):
        errors["shadow"] = ["Enter an object with percentage, min_dwell_s and min_requests."]
    else:
        _number(shadow.get("percentage", 0), "shadow.percentage", errors, low=0, high=100,
                whole=True)  # fmt: skip
        _number(shadow.get("min_dwell_s", 0), "shadow.min_dwell_s", errors, low=0,
                high=7 * 86400, whole=True)  # fmt: skip
        _number(shadow.get("min_requests", 0), "shadow.min_requests", errors, low=0,
                high=10**9, whole=True)  # fmt: skip
    steps = document.get("steps", DEFAULT_PLAN["steps"])
    if not isinstance(steps, list) or not steps:
        errors["steps"] = ["Enter at least one canary step."]
    elif len(steps) > 20:
        errors["steps"] = ["Enter at most 20 steps."]
    else:
        previous = 0.0
        for i, step in enumerate(steps):
            where = f"steps.{i}"
            if not isinstance(step, dict):
                errors[where] = ["Enter an object with percentage, min_dwell_s, min_requests."]
                continue
            for key in sorted(set(step) - {"percentage", "min_dwell_s", "min_requests",
                                           "auto_advance"}):  # fmt: skip
                errors[f"{where}.{key}"] = ["Unknown field."]
            # Whole percentages: runtimes and Unleash SDKs bucket sessions into 1..100.
            percentage = _number(step.get("percentage"), f"{where}.percentage", errors,
                                 low=1, high=99, whole=True)  # fmt: skip
            if percentage is not None:
                if percentage <= previous:
                    errors.setdefault(f"{where}.percentage", []).append(
                        "Each step must send more traffic than the one before."
                    )
                previous = percentage
            _number(step.get("min_dwell_s", 0), f"{where}.min_dwell_s", errors, low=0,
                    high=7 * 86400, whole=True)  # fmt: skip
            _number(step.get("min_requests", 0), f"{where}.min_requests", errors, low=0,
                    high=10**9, whole=True)  # fmt: skip
            _flag(step.get("auto_advance", True), f"{where}.auto_advance", errors)
    metrics = document.get("metrics", DEFAULT_PLAN["metrics"])
    if not isinstance(metrics, list):
        errors["metrics"] = ["Enter a list of metric gates."]
    else:
        seen: set[str] = set()
        for i, metric in enumerate(metrics):
            where = f"metrics.{i}"
            if not isinstance(metric, dict):
                errors[where] = ["Enter an object naming a metric."]
                continue
            name = metric.get("metric")
            if not isinstance(name, str) or name not in METRIC_LABELS:
                errors[f"{where}.metric"] = [f"Choose one of: {', '.join(METRIC_LABELS)}."]
            elif name in seen:
                errors[f"{where}.metric"] = [f"{name} is listed twice."]
            else:
                seen.add(str(name))
            for key in sorted(set(metric) - {"metric", "tolerated_ratio", "min_effect",
                                             "on_failure", "critical", "dry_run"}):  # fmt: skip
                errors[f"{where}.{key}"] = ["Unknown field."]
            _number(metric.get("tolerated_ratio", 1.5), f"{where}.tolerated_ratio", errors,
                    low=1.01, high=100, whole=False)  # fmt: skip
            _number(metric.get("min_effect", 0), f"{where}.min_effect", errors, low=0,
                    high=1e6, whole=False)  # fmt: skip
            if metric.get("on_failure", "rollback") not in ON_FAILURE:
                errors[f"{where}.on_failure"] = ["Choose rollback or pause."]
            _flag(metric.get("critical", True), f"{where}.critical", errors)
            _flag(metric.get("dry_run", False), f"{where}.dry_run", errors)
    _number(document.get("failure_limit", 1), "failure_limit", errors, low=1, high=100,
            whole=True)  # fmt: skip
    _number(document.get("alpha", DEFAULT_PLAN["alpha"]), "alpha", errors, low=ALPHA_RANGE[0],
            high=ALPHA_RANGE[1], whole=False)  # fmt: skip
    guardrail = document.get("guardrail", DEFAULT_PLAN["guardrail"])
    if not isinstance(guardrail, dict):
        errors["guardrail"] = ["Enter an object with max_error_rate and min_requests."]
    else:
        _number(guardrail.get("max_error_rate", 0.25), "guardrail.max_error_rate", errors,
                low=0.0001, high=1, whole=False)  # fmt: skip
        _number(guardrail.get("min_requests", 20), "guardrail.min_requests", errors, low=1,
                high=10**9, whole=True)  # fmt: skip
    if document.get("stickiness", "sessionId") not in STICKINESS:
        errors["stickiness"] = [f"Choose one of: {', '.join(STICKINESS)}."]
    return errors


def plan_normalised(document: dict[str, Any]) -> dict[str, Any]:
    """A valid document with every default filled in (the form rollouts copy)."""
    plan = default_plan()
    for key in ("failure_limit", "alpha", "stickiness"):
        if key in document:
            plan[key] = document[key]
    plan["shadow"] = {**plan["shadow"], **document.get("shadow", {})}
    plan["guardrail"] = {**plan["guardrail"], **document.get("guardrail", {})}
    if "steps" in document:
        plan["steps"] = [
            {"min_dwell_s": 0, "min_requests": 0, "auto_advance": True, **step}
            for step in document["steps"]
        ]
    if "metrics" in document:
        plan["metrics"] = [
            {
                "tolerated_ratio": 1.5,
                "min_effect": 0.0,
                "on_failure": "rollback",
                "critical": True,
                "dry_run": False,
                **metric,
            }
            for metric in document["metrics"]
        ]
    return plan


def plan_summary(plan: dict[str, Any]) -> str:
    """The plan in a line: "shadow 5% → 1% → 10% → 50% → 100%"."""
    parts = []
    if plan["shadow"]["percentage"]:
        parts.append(f"shadow {plan['shadow']['percentage']:g}%")
    parts += [f"{step['percentage']:g}%" for step in plan["steps"]]
    parts.append("100%")
    return " → ".join(parts)
