"""A typed, read-only view of a verified config snapshot (see docs/runtime-api.md).

The runtime swaps whole ``Snapshot`` objects under a lock, so every field here is built once at
parse time and never changed afterwards: readers holding an old reference keep a consistent
picture of one revision."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from .canonical import FORMS, UNMARKED_FORM, form_of

SCHEMA = "controlplane.snapshot/v1"

# which version a record was served by: stable, candidate, or the candidate in shadow
Role = Literal["stable", "candidate", "shadow"]


class SnapshotError(ValueError):
    """The snapshot is structurally unusable; the runtime rejects (NACKs) it."""


@dataclass(frozen=True)
class BundleVersion:
    agent: str
    role: Role
    version: int
    digest: str
    bundle: Mapping[str, Any]
    # The canonical form the digest is over (dataplane/canonical.py); a release without the
    # field predates RFC 8785 and is in the legacy form.
    canonical: str = UNMARKED_FORM


@dataclass(frozen=True)
class Constraint:
    """An Unleash constraint narrowing who may get the candidate (``tenantId IN [acme]``).
    ``operator`` is ``IN`` or ``NOT_IN``; any other fails closed (never met), so a constraint
    this runtime cannot read never widens a canary."""

    context_name: str
    operator: str
    values: frozenset[str]


@dataclass(frozen=True)
class Rollout:
    """The traffic split of a running rollout (docs/runtime-api.md, ``rollout``).

    ``phase`` ``canary``: ``percentage`` of sessions (flexibleRollout bucketing, narrowed by
    ``constraints``) are served the candidate. ``shadow``: live traffic stays on stable
    (``percentage`` is 0) and ``shadow_percentage`` of sessions also run the candidate in
    shadow, its actions not executed. Fields a control plane did not send take the values
    that keep the older meaning (a canary without constraints)."""

    percentage: float
    stickiness: str
    group_id: str
    id: Any = None
    phase: str = "canary"
    shadow_percentage: float = 0.0
    constraints: tuple[Constraint, ...] = ()


@dataclass(frozen=True)
class AgentRelease:
    name: str
    stable: BundleVersion | None
    candidate: BundleVersion | None
    rollout: Rollout | None


@dataclass(frozen=True)
class KillSwitch:
    id: Any
    kind: str  # tool_disabled | agent_mode | agent_stopped
    agent: str | None  # None: every agent in the token's scope
    scope: str
    reason: str
    tool_pattern: str | None = None
    mode: str | None = None  # read_only | draft_only, for kind == agent_mode

    def applies_to(self, agent: str) -> bool:
        return self.agent is None or self.agent == agent

    def disables(self, tool: str) -> bool:
        # fnmatchcase: tool names are case-sensitive identifiers; fnmatch would fold case on
        # some platforms and make a switch's reach depend on the host OS.
        return self.kind == "tool_disabled" and fnmatch.fnmatchcase(tool, self.tool_pattern or "")

    def describe(self) -> str:
        target = self.tool_pattern or self.mode or ""
        reason = f": {self.reason}" if self.reason else ""
        return f"kill switch #{self.id} ({self.kind}{' ' + target if target else ''}){reason}"


BUDGET_SCOPES = ("tenant", "agent", "tenant_agent", "end_user")
BUDGET_ACTIONS = ("alert", "block", "degrade")
BUDGET_METRICS = ("cost_usd", "tokens", "requests", "tool_calls")


@dataclass(frozen=True)
class BudgetLimits:
    """What a budget allows per window; None: that metric is not limited."""

    cost_usd: Decimal | None = None
    tokens: int | None = None  # input plus output
    requests: int | None = None
    tool_calls: int | None = None


@dataclass(frozen=True)
class Degrade:
    """How a ``degrade`` budget serves at its limit: ``mode`` ``draft_only`` (writes wait for
    a human, as under a draft-only kill switch) or ``model`` (the cheaper ``model``)."""

    mode: str  # draft_only | model
    model: str | None = None


@dataclass(frozen=True)
class Budget:
    """One budget of the snapshot (docs/budgets.md, "In the snapshot")."""

    id: Any
    name: str
    scope: str  # tenant | agent | tenant_agent | end_user
    agent: str | None  # the agent's slug for agent and end_user scopes
    window: str  # hour | day | week | month
    window_start: datetime
    resets_at: datetime  # aware; the exhaustion is not enforced from this instant on
    limits: BudgetLimits
    action: str  # alert | block | degrade
    degrade: Degrade | None
    strict: bool
    state: str  # ok | exhausted (tenant and agent scopes)
    exhausted_subjects: frozenset[str]

    def applies_to(self, agent: str) -> bool:
        """Is a request of ``agent`` in this budget's scope (whoever its end user)?"""
        return self.scope in ("tenant", "tenant_agent") or self.agent == agent

    def holds(self, agent: str, end_user_hash: str | None) -> bool:
        """Does this budget count a request of ``agent`` by ``end_user_hash``? As
        ``applies_to``, except that an ``end_user`` budget holds nothing of a request without
        an end user (the control plane reserves nothing on it): such a request is not in
        the scope of a strict ``end_user`` budget (no reservation, no failing closed)."""
        return self.applies_to(agent) and (self.scope != "end_user" or bool(end_user_hash))

    def at_limit(self, agent: str, end_user_hash: str | None, now: datetime) -> bool:
        """Is the scope of this request at the limit at ``now`` (aware)? Never at or after
        ``resets_at``: a new window starts even before the next snapshot says so."""
        if not self.applies_to(agent) or now >= self.resets_at:
            return False
        if self.scope == "tenant_agent":
            return agent in self.exhausted_subjects
        if self.scope == "end_user":
            return bool(end_user_hash) and end_user_hash in self.exhausted_subjects
        return self.state == "exhausted"

    def describe(self) -> str:
        return f"budget #{self.id} ({self.name}, {self.scope}, per {self.window})"


@dataclass(frozen=True)
class Snapshot:
    revision: int
    digest: str
    tenant: str
    environment: str
    agents: Mapping[str, AgentRelease]
    kill_switches: tuple[KillSwitch, ...]
    content: Mapping[str, Any] = field(repr=False)
    # Budgets that apply to the token's scope; () from a control plane that predates them.
    budgets: tuple[Budget, ...] = ()
    # The exact bytes that were verified, kept so the disk cache stores what was signed.
    raw: bytes = field(repr=False, default=b"")

    def served_digests(self, agents: Iterable[str] | None = None) -> dict[str, str]:
        """What the heartbeat reports: the stable digest per agent, and the candidate's under
        ``<agent>:candidate`` while a rollout runs (the runtime serves both); only the agents
        in ``agents`` when given (the ones this runtime serves)."""
        wanted = set(agents) if agents is not None else None
        digests: dict[str, str] = {}
        for name, release in self.agents.items():
            if wanted is not None and name not in wanted:
                continue
            if release.stable is not None:
                digests[name] = release.stable.digest
            if release.candidate is not None:
                digests[f"{name}:candidate"] = release.candidate.digest
        return digests

    def switches_for(self, agent: str) -> tuple[KillSwitch, ...]:
        return tuple(switch for switch in self.kill_switches if switch.applies_to(agent))

    def budgets_for(self, agent: str) -> tuple[Budget, ...]:
        """The budgets a request of ``agent`` is in the scope of (whatever its end user)."""
        return tuple(budget for budget in self.budgets if budget.applies_to(agent))

    @classmethod
    def parse(cls, content: Mapping[str, Any], *, digest: str, raw: bytes = b"") -> Snapshot:
        """Build the view from verified content; raises SnapshotError on a shape it cannot use."""
        if content.get("schema") != SCHEMA:
            raise SnapshotError(f"unsupported snapshot schema {content.get('schema')!r}")
        revision = content.get("revision")
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            raise SnapshotError("snapshot revision must be a non-negative integer")
        agents_raw = _mapping(content.get("agents", {}), "agents")
        agents = {
            str(name): _release(str(name), _mapping(value, f"agents.{name}"))
            for name, value in agents_raw.items()
        }
        switches_raw = content.get("kill_switches", [])
        if not isinstance(switches_raw, list):
            raise SnapshotError("kill_switches must be a list")
        switches = tuple(_kill_switch(_mapping(item, "kill_switches[]")) for item in switches_raw)
        budgets_raw = content.get("budgets", [])
        if budgets_raw is None:
            budgets_raw = []
        if not isinstance(budgets_raw, list):
            raise SnapshotError("budgets must be a list")
        budgets = tuple(
            _budget(i, _mapping(item, f"budgets.{i}")) for i, item in enumerate(budgets_raw)
        )
        return cls(
            revision=revision,
            digest=digest,
            tenant=str(content.get("tenant", "")),
            environment=str(content.get("environment", "")),
            agents=agents,
            kill_switches=switches,
            budgets=budgets,
            content=content,
            raw=raw,
        )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SnapshotError(f"{where} must be an object")
    return value


def _version(agent: str, role: Role, value: Any) -> BundleVersion | None:
    if value is None:
        return None
    data = _mapping(value, f"agents.{agent}.{role}")
    version, digest, bundle = data.get("version"), data.get("digest"), data.get("bundle")
    if not isinstance(version, int) or not isinstance(digest, str) or not digest:
        raise SnapshotError(f"agents.{agent}.{role} needs an integer version and a digest")
    form = form_of(data)
    if form not in FORMS:
        raise SnapshotError(f"agents.{agent}.{role}.canonical {data.get('canonical')!r} is unknown")
    return BundleVersion(
        agent=agent,
        role=role,
        version=version,
        digest=digest,
        bundle=_mapping(bundle, f"agents.{agent}.{role}.bundle"),
        canonical=form,
    )


def _release(name: str, data: Mapping[str, Any]) -> AgentRelease:
    rollout_raw = data.get("rollout")
    rollout = None
    if rollout_raw is not None:
        rollout_data = _mapping(rollout_raw, f"agents.{name}.rollout")
        try:
            percentage = float(rollout_data.get("percentage", 0))
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"agents.{name}.rollout.percentage must be a number") from exc
        try:
            shadow_percentage = float(rollout_data.get("shadow_percentage") or 0)
        except (TypeError, ValueError) as exc:
            raise SnapshotError(
                f"agents.{name}.rollout.shadow_percentage must be a number"
            ) from exc
        rollout = Rollout(
            percentage=percentage,
            stickiness=str(rollout_data.get("stickiness") or "sessionId"),
            group_id=str(rollout_data.get("group_id") or ""),
            id=rollout_data.get("id"),
            phase=str(rollout_data.get("phase") or "canary"),
            shadow_percentage=shadow_percentage,
            constraints=_constraints(name, rollout_data.get("constraints")),
        )
    return AgentRelease(
        name=name,
        stable=_version(name, "stable", data.get("stable")),
        candidate=_version(name, "candidate", data.get("candidate")),
        rollout=rollout,
    )


def _constraints(name: str, raw: Any) -> tuple[Constraint, ...]:
    if raw in (None, ""):
        return ()
    if not isinstance(raw, list):
        raise SnapshotError(f"agents.{name}.rollout.constraints must be a list")
    constraints = []
    for i, item in enumerate(raw):
        data = _mapping(item, f"agents.{name}.rollout.constraints.{i}")
        values = data.get("values") or []
        if not isinstance(values, list):
            raise SnapshotError(f"agents.{name}.rollout.constraints.{i}.values must be a list")
        constraints.append(
            Constraint(
                context_name=str(data.get("contextName") or ""),
                operator=str(data.get("operator") or ""),
                values=frozenset(str(v) for v in values),
            )
        )
    return tuple(constraints)


_KINDS = {"tool_disabled", "agent_mode", "agent_stopped"}


def _kill_switch(data: Mapping[str, Any]) -> KillSwitch:
    kind = data.get("kind")
    # An unknown kind is refused rather than skipped: silently ignoring a switch an operator
    # engaged is the one failure a kill switch must never have.
    if kind not in _KINDS:
        raise SnapshotError(f"unknown kill switch kind {kind!r}")
    if kind == "tool_disabled" and not data.get("tool_pattern"):
        raise SnapshotError("a tool_disabled kill switch needs a tool_pattern")
    if kind == "agent_mode" and data.get("mode") not in ("read_only", "draft_only"):
        raise SnapshotError(f"unknown agent_mode {data.get('mode')!r}")
    agent = data.get("agent")
    return KillSwitch(
        id=data.get("id"),
        kind=str(kind),
        agent=str(agent) if agent else None,
        scope=str(data.get("scope") or ""),
        reason=str(data.get("reason") or ""),
        tool_pattern=str(data["tool_pattern"]) if data.get("tool_pattern") else None,
        mode=str(data["mode"]) if data.get("mode") else None,
    )


def _budget(index: int, data: Mapping[str, Any]) -> Budget:
    # Malformed budgets are refused (the snapshot is NACKed), as kill switches are: a budget
    # skipped silently would let spending run past a limit an operator set.
    where = f"budgets.{index}"
    scope, action = data.get("scope"), data.get("action")
    if scope not in BUDGET_SCOPES:
        raise SnapshotError(f"{where}.scope {scope!r} is unknown")
    if action not in BUDGET_ACTIONS:
        raise SnapshotError(f"{where}.action {action!r} is unknown")
    agent = data.get("agent")
    if scope in ("agent", "end_user") and (not isinstance(agent, str) or not agent):
        raise SnapshotError(f"{where} of scope {scope} needs an agent")
    degrade = None
    degrade_raw = data.get("degrade")
    if degrade_raw is not None:
        degrade_data = _mapping(degrade_raw, f"{where}.degrade")
        mode, model = degrade_data.get("mode"), degrade_data.get("model")
        if mode not in ("draft_only", "model"):
            raise SnapshotError(f"{where}.degrade.mode {mode!r} is unknown")
        if mode == "model" and (not isinstance(model, str) or not model):
            raise SnapshotError(f"{where}.degrade of mode model needs a model")
        degrade = Degrade(mode=str(mode), model=str(model) if mode == "model" else None)
    if action == "degrade" and degrade is None:
        raise SnapshotError(f"{where} degrades but names no degrade mode")
    state = data.get("state", "ok")
    if state not in ("ok", "exhausted"):
        raise SnapshotError(f"{where}.state {state!r} is unknown")
    subjects = data.get("exhausted_subjects") or []
    if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
        raise SnapshotError(f"{where}.exhausted_subjects must be a list of strings")
    strict = data.get("strict", False)
    if not isinstance(strict, bool):
        raise SnapshotError(f"{where}.strict must be a boolean")
    return Budget(
        id=data.get("id"),
        name=str(data.get("name") or ""),
        scope=str(scope),
        agent=str(agent) if agent else None,
        window=str(data.get("window") or ""),
        window_start=_instant(data.get("window_start"), f"{where}.window_start"),
        resets_at=_instant(data.get("resets_at"), f"{where}.resets_at"),
        limits=_budget_limits(_mapping(data.get("limits"), f"{where}.limits"), where),
        action=str(action),
        degrade=degrade,
        strict=strict,
        state=str(state),
        exhausted_subjects=frozenset(subjects),
    )


def _instant(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise SnapshotError(f"{where} must be an ISO 8601 instant")
    try:
        # fromisoformat reads "Z" from Python 3.11 on.
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise SnapshotError(f"{where} {value!r} is not an ISO 8601 instant") from exc
    if instant.tzinfo is None:
        raise SnapshotError(f"{where} {value!r} has no UTC offset")
    return instant


def _budget_limits(data: Mapping[str, Any], where: str) -> BudgetLimits:
    cost_raw = data.get("cost_usd")
    cost = None
    if cost_raw is not None:
        # A decimal string; a JSON number is read through str() so 0.1 stays 0.1.
        if isinstance(cost_raw, bool) or not isinstance(cost_raw, str | int | float):
            raise SnapshotError(f"{where}.limits.cost_usd must be a decimal string")
        try:
            cost = Decimal(str(cost_raw))
        except InvalidOperation as exc:
            raise SnapshotError(f"{where}.limits.cost_usd {cost_raw!r} is not a decimal") from exc
        if not cost.is_finite() or cost < 0:
            raise SnapshotError(f"{where}.limits.cost_usd must be a non-negative decimal")
    counts: dict[str, int | None] = {}
    for name in ("tokens", "requests", "tool_calls"):
        value = data.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise SnapshotError(f"{where}.limits.{name} must be a non-negative integer")
        counts[name] = value
    if cost is None and all(value is None for value in counts.values()):
        raise SnapshotError(f"{where}.limits limits nothing")
    return BudgetLimits(
        cost_usd=cost,
        tokens=counts["tokens"],
        requests=counts["requests"],
        tool_calls=counts["tool_calls"],
    )
