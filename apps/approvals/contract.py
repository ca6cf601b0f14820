"""What the platform says about a tool call from the bundle's tool contract, not from the
model: the call's risk, the lines of its risk summary, and which arguments are redacted.

Reads the bundle version the runtime serves (its ``bundle_version``), or the agent's stable
deployment in the environment. Rules are evaluated with the reference runtime's own policy
code (``dataplane.policy``), so the summary names the ``ask`` rule the runtime applied."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dataplane.policy import compile_policy

from .models import RISK_LABELS, RISKS, risk_rank

REDACTED = "[redacted]"
RISK_MEANING = {
    "read": "no side effect",
    "write": "changes something",
    "critical": "money, data loss or anything hard to undo",
}


@dataclass(frozen=True)
class Assessment:
    """The platform's view of one call. ``risk``: read | write | critical; ``summary``: lines
    for a person; ``arguments``: as approvers see them (sensitive ones replaced by
    ``REDACTED``); ``redacted``: the names replaced; ``complete``: no argument was redacted
    (so the runtime's hash can be checked against them)."""

    risk: str
    summary: list[str]
    arguments: dict[str, Any]
    redacted: list[str] = field(default_factory=list)
    complete: bool = True
    # where the runtime sent ``REDACTED`` for an argument the contract does not mark
    # sensitive: refused (it would hide a value from the approver and skip the hash check)
    stray_markers: list[str] = field(default_factory=list)


def _redact(arguments: dict[str, Any], sensitive: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Replace each sensitive argument (a top-level name or a dotted path) by ``REDACTED``."""
    result: dict[str, Any] = dict(arguments)
    redacted: list[str] = []
    for path in sensitive:
        parts = path.split(".")
        holder: Any = result
        for part in parts[:-1]:
            if not isinstance(holder, dict) or not isinstance(holder.get(part), dict):
                holder = None
                break
            holder[part] = dict(holder[part])  # copy on write: the caller's dict stays as sent
            holder = holder[part]
        if isinstance(holder, dict) and parts[-1] in holder:
            if holder[parts[-1]] != REDACTED:
                holder[parts[-1]] = REDACTED
            redacted.append(path)
    return result, redacted


def declared_risk(bundle: Mapping[str, Any] | None, tool: str) -> str | None:
    """The risk ``bundle``'s contract declares for ``tool`` (unknown risks: critical), None
    when it does not declare the tool."""
    for spec in (bundle or {}).get("tools") or []:
        if isinstance(spec, Mapping) and spec.get("name") == tool:
            risk = str(spec.get("risk") or "critical")
            return risk if risk in RISKS else "critical"
    return None


def sensitive_paths(bundle: Mapping[str, Any] | None, tool: str) -> frozenset[str]:
    """The argument paths ``bundle``'s contract marks sensitive for ``tool``."""
    for spec in (bundle or {}).get("tools") or []:
        if isinstance(spec, Mapping) and spec.get("name") == tool:
            return frozenset(i for i in spec.get("sensitive_args") or [] if isinstance(i, str))
    return frozenset()


def assess(
    *,
    bundle: Mapping[str, Any] | None,
    version_label: str,
    tool: str,
    arguments: dict[str, Any],
    claimed_risk: str | None,
    floor: tuple[str, str] | None = None,
    also_sensitive: frozenset[str] = frozenset(),
) -> Assessment:
    """The call's risk (the stronger of the contract's and the runtime's claim; a tool the
    contract does not declare is critical), summary lines, and redacted arguments.
    ``version_label``: e.g. "v3", named in the lines; ``bundle`` None when the agent has no
    version in the environment (then the runtime's claim, or critical, decides). ``floor``:
    (risk, why) another contract sets for the tool, e.g. the stable deployment's when the
    runtime names another version: the stronger rating holds (a stale or hand-picked version
    cannot lower it). ``also_sensitive``: argument paths other versions the environment serves
    mark sensitive (a runtime redacts for every version it may serve): a runtime's
    ``REDACTED`` there is expected, anywhere else refused (``stray_markers``)."""
    lines: list[str] = []
    spec: Mapping[str, Any] | None = None
    policy = None
    if bundle is not None:
        for candidate in bundle.get("tools") or []:
            if isinstance(candidate, Mapping) and candidate.get("name") == tool:
                spec = candidate
        try:
            policy = compile_policy(bundle)
        except Exception:  # a stored version always compiles; never let a summary fail a call
            policy = None
    if spec is None:
        contract_risk = "critical"
        where = f"{version_label}'s tool contract" if bundle is not None else "any deployed version"
        lines.append(f"Not declared in {where}: treated as critical.")
    else:
        contract_risk = str(spec.get("risk") or "critical")
        if contract_risk not in RISKS:
            contract_risk = "critical"
        lines.append(
            f"{RISK_LABELS[contract_risk].capitalize()} risk in {version_label}'s contract: "
            f"{RISK_MEANING[contract_risk]}."
        )
    risk = contract_risk
    if claimed_risk in RISKS and risk_rank(claimed_risk) > risk_rank(risk):
        risk = claimed_risk
        lines.append(
            f"The runtime rated it {RISK_LABELS[claimed_risk]}: the stronger rating holds."
        )
    if floor is not None and risk_rank(floor[0]) > risk_rank(risk):
        risk = floor[0]
        lines.append(f"{floor[1]} rates it {RISK_LABELS[risk]}: the stronger rating holds.")
    if risk == "critical":
        lines.append("Critical: two different approvers must approve.")
    sensitive: list[str] = []
    if spec is not None:
        if spec.get("requires_approval") is True:
            lines.append("Every call of this tool waits for a human (requires_approval).")
        if spec.get("idempotent") is not True:
            lines.append("Not idempotent: running it twice repeats the effect.")
        limit = spec.get("rate_limit")
        if isinstance(limit, Mapping) and limit.get("max_calls") and limit.get("per_s"):
            lines.append(
                f"Rate limit: {limit['max_calls']} calls per {limit['per_s']} s per runtime."
            )
        sensitive = [item for item in spec.get("sensitive_args") or [] if isinstance(item, str)]
    shown, redacted = _redact(arguments, sensitive)
    if redacted:
        lines.append(f"Hidden here (sensitive in the contract): {', '.join(redacted)}.")
    if policy is not None and spec is not None:
        tool_spec = policy.tools.get(tool)
        if tool_spec is not None:
            problems = sorted(
                tool_spec.validator.iter_errors(shown), key=lambda error: list(error.path)
            )
            real = [p for p in problems if p.instance != REDACTED]
            if real:
                lines.append(
                    "Arguments do not fit the tool's schema: "
                    + "; ".join(p.message[:120] for p in real[:3])
                )
        for rule in policy.rules:
            if rule.action == "ask" and rule.applies(tool, shown, {}):
                lines.append(f"Asked by {rule.label()}.")
                break
    markers = _marker_paths(arguments, "")
    stray = [path for path in markers if path not in sensitive and path not in also_sensitive]
    complete = not redacted and not markers
    return Assessment(risk, lines, shown, redacted, complete, stray)


def _marker_paths(value: Any, path: str) -> list[str]:
    """The dotted paths (list items by index) whose value is ``REDACTED``."""
    if value == REDACTED:
        return [path]
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _marker_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _marker_paths(item, f"{path}.{index}" if path else str(index))
    return found
