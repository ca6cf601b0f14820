"""The guardrail API an agent loop calls: which version serves a session, and may this tool
call run?

Checks run in a fixed precedence, and the first refusal decides:

1. kill switches (agent stopped; tool disabled; read-only mode; draft-only mode) — read from the
   *live* snapshot, so one engaged mid-request applies at the next check, and nothing below
   (bundle rules, a rollout, a human approval) can override them;
1b. budgets (docs/budgets.md), also from the live snapshot: a ``block`` budget at its limit
   refuses (outcome ``budget_blocked``, ``error_code`` ``budget:<id>``), as does any strict
   budget in scope once the control plane has been unreachable past the grace
   (``budget:<id>:unreachable``); a ``degrade`` budget at its limit adds a draft-only floor
   like the kill switch's, or names the cheaper model (``model_override``);
2. the bundle's tool allowlist (a tool the version does not declare is denied);
3. JSON-Schema validation of the arguments (draft 2020-12);
4. per-request limits, from the usage the loop records; the caps (``max_steps``,
   ``max_tool_calls``, ``max_total_tokens``, ``max_cost_usd``) refuse with outcome
   ``budget_blocked`` and ``error_code`` ``cap:<name>``;
5. the bundle's ordered tool rules: first match wins, no match denies;
6. the tool's ``requires_approval``;
7. the tool's circuit breaker, then its rate limit (both shared by the whole runtime).

``ask`` outcomes (draft-only mode, ``ask`` rules, ``requires_approval``) become ``allow`` once the
loop re-checks with ``approved=True`` after a human approved; refusals never do.

Rollouts: ``choose_version`` serves the candidate to the sessions the rollout's flexibleRollout
bucketing and constraints admit (canary phase). In the ``shadow`` phase every session is
served stable, and ``choose_shadow`` names the sessions that *also* run the candidate in
shadow: a guard made with ``shadow=True`` (``Runtime.shadow_guard``) decides as usual, but
marks every decision ``shadow`` — nothing it allows may be executed (``Decision.executable``
is False; the loop records the call with ``record_tool_call(..., executed=False)``, as
draft-only mode holds writes back), it takes no rate-limit slot and feeds no circuit breaker,
and its record is reported with variant ``shadow`` (the version's ``role``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from jsonschema.exceptions import best_match

from .breaker import BreakerBoard
from .bucketing import rollout_enabled
from .budgets import ReserveResult, SettleResult
from .policy import Policy, Tool, policy_cache
from .ratelimit import RateLimiter
from .regex import regex_problem, search
from .snapshot import Budget, BundleVersion, Degrade, KillSwitch, Rollout, Snapshot

BUDGET_BLOCKED = "budget_blocked"


class Verdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    NEEDS_APPROVAL = "needs_approval"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    # Which check decided: kill_switch, allowlist, schema, limit, rule, approval, breaker,
    # rate_limit or input.
    check: str = ""
    # Decided for a shadow run of the candidate: never executed, whatever the verdict.
    shadow: bool = False
    # How the request's record reports a refusal that ends it, when it is not the default
    # (policy_denied): ``budget_blocked`` for budgets and caps; error_code ``budget:<id>``,
    # ``budget:<id>:unreachable`` or ``cap:<name>``.
    outcome: str = ""
    error_code: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW

    @property
    def executable(self) -> bool:
        """May the loop perform the call? Allowed, and not in a shadow run."""
        return self.allowed and not self.shadow

    @property
    def denied(self) -> bool:
        return self.verdict is Verdict.DENY

    @property
    def needs_approval(self) -> bool:
        return self.verdict is Verdict.NEEDS_APPROVAL

    @classmethod
    def allow(cls, reason: str = "", check: str = "") -> Decision:
        return cls(Verdict.ALLOW, reason, check)

    @classmethod
    def deny(cls, reason: str, check: str) -> Decision:
        return cls(Verdict.DENY, reason, check)

    @classmethod
    def ask(cls, reason: str, check: str) -> Decision:
        return cls(Verdict.NEEDS_APPROVAL, reason, check)

    @classmethod
    def budget_blocked(cls, reason: str, error_code: str, check: str = "budget") -> Decision:
        """A refusal the record reports as outcome ``budget_blocked`` with ``error_code``."""
        return cls(Verdict.DENY, reason, check, outcome=BUDGET_BLOCKED, error_code=error_code)

    @classmethod
    def cap(cls, name: str, limit: Any, reached: str = "reached") -> Decision:
        """A per-request cap of ``policies.limits`` hit: ``budget_blocked``, ``cap:<name>``."""
        return cls.budget_blocked(f"{name} ({limit}) {reached}", f"cap:{name}", "limit")


@dataclass(frozen=True)
class RequestContext:
    """Facts about the request that rules may test (bundle ``context`` keys)."""

    end_user_role: str | None = None
    tenant: str | None = None
    environment: str | None = None
    confidence: float | None = None  # the model's stated confidence, 0..1
    # The hashed end-user id the records report (``usage.end_user_hash``); what ``end_user``
    # budgets count by. Not a rule context key.
    end_user_hash: str | None = None

    def as_mapping(self, confidence: float | None = None) -> dict[str, Any]:
        return {
            "end_user_role": self.end_user_role,
            "tenant": self.tenant,
            "environment": self.environment,
            "confidence": confidence if confidence is not None else self.confidence,
        }


@dataclass
class Usage:
    steps: int = 0
    tool_calls: int = 0
    total_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    retries: dict[str, int] = field(default_factory=dict)
    last_failed: dict[str, bool] = field(default_factory=dict)
    # tool calls recorded but not performed (a shadow run)
    not_executed: list[str] = field(default_factory=list)


def rollout_admits(rollout: Rollout, percentage: float, context: Mapping[str, Any]) -> bool:
    """Does ``rollout`` put this context within ``percentage``? Its constraints first (IN /
    NOT_IN on a context field, e.g. ``tenantId`` from the request's properties), then
    Unleash's flexibleRollout bucketing: exactly what an SDK answers for the
    ``rollout.<agent>`` feature."""
    return rollout_enabled(
        percentage,
        rollout.group_id,
        rollout.stickiness,
        [(c.context_name, c.operator, c.values) for c in rollout.constraints],
        context,
    )


def _unleash_context(
    session_id: str, user_id: str | None, properties: Mapping[str, str] | None
) -> dict[str, Any]:
    return {"sessionId": session_id, "userId": user_id, "properties": dict(properties or {})}


def choose_version(
    snapshot: Snapshot | None,
    agent: str,
    session_id: str,
    *,
    user_id: str | None = None,
    properties: Mapping[str, str] | None = None,
) -> BundleVersion | None:
    """Stable, or the candidate when a rollout in its canary phase admits this session
    (``rollout_admits``: same group id, stickiness and constraints as every SDK, so one
    session stays on one version across runtimes). In the shadow phase always stable (see
    ``choose_shadow``). None when the agent has nothing deployed here."""
    if snapshot is None:
        return None
    release = snapshot.agents.get(agent)
    if release is None:
        return None
    rollout = release.rollout
    if release.candidate is not None and rollout is not None and rollout.phase != "shadow":
        context = _unleash_context(session_id, user_id, properties)
        if rollout_admits(rollout, rollout.percentage, context):
            return release.candidate
    return release.stable


def choose_shadow(
    snapshot: Snapshot | None,
    agent: str,
    session_id: str,
    *,
    user_id: str | None = None,
    properties: Mapping[str, str] | None = None,
) -> BundleVersion | None:
    """The candidate to run in shadow beside stable for this session (its ``role``
    ``shadow``), or None: only in a rollout's shadow phase, for the ``shadow_percentage`` of
    sessions the same bucketing and constraints admit."""
    if snapshot is None:
        return None
    release = snapshot.agents.get(agent)
    if release is None or release.candidate is None or release.rollout is None:
        return None
    rollout = release.rollout
    if rollout.phase != "shadow" or release.stable is None:
        return None
    context = _unleash_context(session_id, user_id, properties)
    if not rollout_admits(rollout, rollout.shadow_percentage, context):
        return None
    return replace(release.candidate, role="shadow")


def kill_switch_decision(
    switches: tuple[KillSwitch, ...], tool: str, tool_spec: Tool | None
) -> Decision | None:
    """The kill switches' verdict on one tool call: a refusal, an approval floor, or None."""
    for switch in switches:
        if switch.kind == "agent_stopped":
            return Decision.deny(f"agent stopped by {switch.describe()}", "kill_switch")
    for switch in switches:
        if switch.disables(tool):
            return Decision.deny(f"{tool} disabled by {switch.describe()}", "kill_switch")
    # A tool the bundle does not declare has no known risk; the modes treat it as a write.
    is_read = tool_spec is not None and tool_spec.is_read
    modes = [switch for switch in switches if switch.kind == "agent_mode"]
    for switch in modes:
        if switch.mode == "read_only" and not is_read:
            return Decision.deny(
                f"{tool} writes, and the agent is read-only: {switch.describe()}", "kill_switch"
            )
    for switch in modes:
        if switch.mode == "draft_only" and not is_read:
            return Decision.ask(
                f"{tool} writes, and the agent is draft-only: {switch.describe()}", "kill_switch"
            )
    return None


class BudgetPort(Protocol):
    """What a guard needs from its runtime for strict budgets (``client.Runtime`` is one)."""

    budget_grace_s: float

    def unreachable_s(self, now: datetime) -> float:
        """For how long (seconds) the control plane has been unreachable at ``now``; 0 when
        the last call reached it."""
        ...

    def budget_reserve(
        self,
        *,
        reservation_id: str,
        request_id: str,
        agent: str,
        end_user_hash: str = "",
        estimate: Mapping[str, Any],
    ) -> ReserveResult: ...

    def budget_settle(self, *, reservation_id: str, actual: Mapping[str, Any]) -> SettleResult: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RequestGuard:
    """Guardrails for one request of one agent. Cheap to create; use one per request.

    ``clock``: the aware "now" budgets are judged at (their ``resets_at``; tests inject
    one). ``budget_port``: the runtime that reserves and settles for strict budgets and
    knows whether the control plane is reachable; None (offline simulations) grants every
    reservation locally and never fails closed."""

    def __init__(
        self,
        snapshot: Snapshot | None,
        *,
        agent: str,
        session_id: str,
        context: RequestContext | None = None,
        breakers: BreakerBoard | None = None,
        live: Callable[[], Snapshot | None] | None = None,
        user_id: str | None = None,
        rate_limits: RateLimiter | None = None,
        properties: Mapping[str, str] | None = None,
        shadow: bool = False,
        clock: Callable[[], datetime] | None = None,
        budget_port: BudgetPort | None = None,
    ) -> None:
        self.agent = agent
        self.session_id = session_id
        self.context = context or RequestContext()
        # A shadow run executes nothing: no rate-limit slot, no breaker state of its own.
        self.shadow = shadow
        if shadow:
            breakers = rate_limits = None
        choose = choose_shadow if shadow else choose_version
        self.version = choose(snapshot, agent, session_id, user_id=user_id, properties=properties)
        self.policy: Policy | None = (
            policy_cache.get(self.version.digest, self.version.bundle) if self.version else None
        )
        self.usage = Usage()
        self.decisions: list[tuple[str, Decision]] = []
        self._pinned = snapshot
        self._live = live
        self._breakers = breakers
        self._rate_limits = rate_limits
        self._clock = clock or _utcnow
        self._budget_port = budget_port
        self._lock = threading.Lock()
        # The first refusal that reports the request as budget_blocked (a budget, a cap or a
        # refused reservation): what the request's record says.
        self.budget_stop: Decision | None = None

    def _current(self) -> Snapshot | None:
        current = self._live() if self._live is not None else None
        return current or self._pinned

    def _switches(self) -> tuple[KillSwitch, ...]:
        snapshot = self._current()
        return snapshot.switches_for(self.agent) if snapshot is not None else ()

    # -- budgets ----------------------------------------------------------------------------

    def budgets(self) -> tuple[Budget, ...]:
        """The budgets of the live snapshot this request is in the scope of."""
        snapshot = self._current()
        return snapshot.budgets_for(self.agent) if snapshot is not None else ()

    def _budget_refusal(self) -> Decision | None:
        """A ``block`` budget at its limit, or a strict budget while the control plane has
        been unreachable past the grace; None when budgets let the request go on."""
        budgets = self.budgets()
        if not budgets:
            return None
        now = self._clock()
        user = self.context.end_user_hash
        for budget in budgets:
            if budget.action == "block" and budget.at_limit(self.agent, user, now):
                return Decision.budget_blocked(
                    f"{self.agent} blocked by {budget.describe()}: at its limit until "
                    f"{budget.resets_at.isoformat()}",
                    f"budget:{budget.id}",
                )
        port = self._budget_port
        if port is None:
            return None
        strict = [budget for budget in budgets if budget.strict and budget.holds(self.agent, user)]
        if strict:
            unreachable = port.unreachable_s(now)
            if unreachable > port.budget_grace_s:
                # Fail closed: a strict budget promises its limit holds, which the runtime
                # can no longer know. Soft budgets stay open.
                return Decision.budget_blocked(
                    f"{self.agent} refused: {strict[0].describe()} is strict and the control "
                    f"plane has been unreachable for {unreachable:.0f} s "
                    f"(grace {port.budget_grace_s:g} s)",
                    f"budget:{strict[0].id}:unreachable",
                )
        return None

    def degrades(self) -> tuple[tuple[Budget, Degrade], ...]:
        """The ``degrade`` budgets at their limit now, with how each degrades."""
        budgets = self.budgets()
        if not budgets:
            return ()
        now = self._clock()
        user = self.context.end_user_hash
        return tuple(
            (budget, budget.degrade)
            for budget in budgets
            if budget.action == "degrade"
            and budget.degrade is not None
            and budget.at_limit(self.agent, user, now)
        )

    @property
    def model_override(self) -> str | None:
        """The cheaper model a ``degrade`` budget (mode ``model``) at its limit makes the
        runtime use for its next model call; None: the bundle's model."""
        for _budget, degrade in self.degrades():
            if degrade.mode == "model":
                return degrade.model
        return None

    def _draft_only_floor(self, tool: str, tool_spec: Tool | None) -> Decision | None:
        # Exactly the draft-only kill switch's floor: a write (or an undeclared tool) waits
        # for a human; reads go on.
        if tool_spec is not None and tool_spec.is_read:
            return None
        for budget, degrade in self.degrades():
            if degrade.mode == "draft_only":
                return Decision.ask(
                    f"{tool} writes, and {budget.describe()} at its limit makes the agent "
                    "draft-only",
                    "budget",
                )
        return None

    def check_budget(self) -> Decision:
        """Do the budgets let this request go on? (``check_step`` and ``check_tool_call``
        ask this too; call it to refuse a request before any work.)"""
        stopped = any(switch.kind == "agent_stopped" for switch in self._switches())
        refusal = None if stopped else self._budget_refusal()
        return self._note("<budget>", refusal or Decision.allow(check="budget"))

    def reserve(
        self, *, reservation_id: str, request_id: str, estimate: Mapping[str, Any]
    ) -> ReserveResult:
        """Reserve ``estimate`` (any of ``cost_usd``, ``tokens``, ``requests``,
        ``tool_calls``) before an expensive step, through the runtime (which asks the
        control plane only when a strict budget is in scope). A refusal is noted like a
        refused check: the request is then reported ``budget_blocked`` with its
        ``error_code``."""
        port = self._budget_port
        # Only a strict budget that limits something the estimate uses can refuse it: a tool
        # call's reservation under a cost-only budget needs no round trip.
        asked = [metric for metric, amount in estimate.items() if amount]
        user = self.context.end_user_hash
        if port is None or not any(
            budget.strict
            and budget.holds(self.agent, user)
            and any(getattr(budget.limits, metric, None) is not None for metric in asked)
            for budget in self.budgets()
        ):
            return ReserveResult(reservation_id=reservation_id, granted=True, source="local")
        result = port.budget_reserve(
            reservation_id=reservation_id,
            request_id=request_id,
            agent=self.agent,
            end_user_hash=self.context.end_user_hash or "",
            estimate=estimate,
        )
        if not result.granted:
            refused = result.refused_by
            what = (
                f"budget #{refused.id} ({refused.name}) has {refused.remaining} "
                f"{refused.metric} left"
                if refused is not None
                else "the control plane is unreachable past the grace"
            )
            self._note(
                "<reserve>",
                Decision.budget_blocked(
                    f"reservation {reservation_id} refused: {what}",
                    result.error_code,
                    "reservation",
                ),
            )
        return result

    def settle(self, *, reservation_id: str, actual: Mapping[str, Any]) -> SettleResult:
        """Settle a reservation with what the step actually consumed (never raises)."""
        if self._budget_port is None:
            return SettleResult(reservation_id=reservation_id, status="local")
        return self._budget_port.budget_settle(reservation_id=reservation_id, actual=actual)

    # -- checks -----------------------------------------------------------------------------

    def check_step(self) -> Decision:
        """May the loop make another model call?"""
        return self._note("<step>", self._decide_step())

    def _decide_step(self) -> Decision:
        for switch in self._switches():
            if switch.kind == "agent_stopped":
                return Decision.deny(f"agent stopped by {switch.describe()}", "kill_switch")
        budget = self._budget_refusal()
        if budget is not None:
            return budget
        if self.policy is None:
            return self._not_deployed()
        limits = self.policy.limits
        with self._lock:
            if limits.max_steps is not None and self.usage.steps >= limits.max_steps:
                return Decision.cap("max_steps", limits.max_steps)
            refusal = self._spend_cap(self.usage)
        return refusal or Decision.allow(check="limit")

    def check_input(self, text: str) -> Decision:
        """Input policy for an end-user message: length cap and blocked patterns."""
        return self._note("<input>", self._decide_input(text))

    def _decide_input(self, text: str) -> Decision:
        # A stopped agent is refused at its first step by the kill switch, which keeps
        # precedence over budgets; otherwise a blocked budget refuses before any work.
        if not any(switch.kind == "agent_stopped" for switch in self._switches()):
            budget = self._budget_refusal()
            if budget is not None:
                return budget
        if self.policy is None:
            return self._not_deployed()
        if self.policy.max_input_chars is not None and len(text) > self.policy.max_input_chars:
            return Decision.deny(
                f"input is {len(text)} characters, over the limit of {self.policy.max_input_chars}",
                "input",
            )
        for pattern, description in self.policy.blocked_patterns:
            found = search(pattern, text)
            if found is None:
                # A blocked pattern RE2 cannot compile (a version stored before the control
                # plane checked with RE2, or RE2 missing here) blocks every message: fail
                # closed, never let through what the author meant to stop.
                return Decision.deny(
                    f"input refused: blocked pattern ({description}) cannot be compiled by "
                    f"RE2 ({regex_problem(pattern)}), so every message is blocked (fail-closed)",
                    "input",
                )
            if found:
                return Decision.deny(f"input matches a blocked pattern ({description})", "input")
        return Decision.allow(check="input")

    def check_tool_call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        confidence: float | None = None,
        approved: bool = False,
    ) -> Decision:
        """allow / deny(reason) / needs_approval(reason) for one call, in the module's order."""
        return self._note(tool, self._decide(tool, arguments, confidence, approved))

    def _decide(
        self, tool: str, arguments: Mapping[str, Any], confidence: float | None, approved: bool
    ) -> Decision:
        policy = self.policy
        spec = policy.tools.get(tool) if policy is not None else None
        floor = kill_switch_decision(self._switches(), tool, spec)
        if floor is not None and floor.denied:
            return floor
        budget = self._budget_refusal()
        if budget is not None:
            return budget
        if floor is None:
            floor = self._draft_only_floor(tool, spec)
        if policy is None:
            return self._not_deployed()
        if spec is None:
            return Decision.deny(f"{tool} is not a tool of {self._version_label()}", "allowlist")
        error = best_match(spec.validator.iter_errors(arguments))
        if error is not None:
            where = "/" + "/".join(str(part) for part in error.absolute_path)
            return Decision.deny(
                f"arguments of {tool} invalid at {where}: {error.message}", "schema"
            )
        limit = self._limit_refusal(tool)
        if limit is not None:
            return limit
        rule = policy.first_matching_rule(tool, arguments, self.context.as_mapping(confidence))
        if rule is None:
            return Decision.deny(f"no rule allows {tool} (default deny)", "rule")
        # A condition that can never be true because of a type makes the rule apply (fail
        # closed); the reason says so, so the operator fixes the bundle.
        closed = (
            f" (fail-closed: its condition compares {rule.ill_typed[tool]})"
            if tool in rule.ill_typed
            else f" (fail-closed: its condition's {rule.broken_pattern})"
            if rule.broken_pattern is not None
            else ""
        )
        if rule.action == "deny":
            return Decision.deny(f"{tool} denied by {rule.label()}{closed}", "rule")
        asks = [d for d in (floor,) if d is not None]
        if rule.action == "ask":
            asks.append(Decision.ask(f"{tool} needs approval by {rule.label()}{closed}", "rule"))
        if spec.requires_approval:
            asks.append(Decision.ask(f"{tool} requires approval", "approval"))
        if asks and not approved:
            return self._breaker_refusal(tool, claim=False) or asks[0]
        # Look at the breaker before taking a rate-limit slot, and claim its (half-open) probe
        # only after: neither is spent on a call that does not run.
        return (
            self._breaker_refusal(tool, claim=False)
            or self._rate_refusal(spec)
            or self._breaker_refusal(tool, claim=True)
            or Decision.allow(
                f"allowed by {rule.label()}" + (" after approval" if asks else ""), "rule"
            )
        )

    def _limit_refusal(self, tool: str) -> Decision | None:
        assert self.policy is not None
        limits = self.policy.limits
        with self._lock:
            usage = self.usage
            if limits.max_steps is not None and usage.steps > limits.max_steps:
                return Decision.cap("max_steps", limits.max_steps, "exceeded")
            if limits.max_tool_calls is not None and usage.tool_calls >= limits.max_tool_calls:
                return Decision.cap("max_tool_calls", limits.max_tool_calls)
            retries = usage.retries.get(tool, 0)
            if (
                limits.max_retries_per_tool is not None
                and usage.last_failed.get(tool)
                and retries >= limits.max_retries_per_tool
            ):
                allowed = limits.max_retries_per_tool
                return Decision.deny(
                    f"{tool} failed and its retries are used up (max_retries_per_tool {allowed})",
                    "limit",
                )
            return self._spend_cap(usage)

    def _spend_cap(self, usage: Usage) -> Decision | None:
        assert self.policy is not None
        limits = self.policy.limits
        if limits.max_total_tokens is not None and usage.total_tokens >= limits.max_total_tokens:
            return Decision.cap("max_total_tokens", limits.max_total_tokens)
        if limits.max_cost_usd is not None and usage.cost_usd >= limits.max_cost_usd:
            return Decision.cap("max_cost_usd", limits.max_cost_usd)
        return None

    def _breaker_refusal(self, tool: str, *, claim: bool) -> Decision | None:
        if self._breakers is None:
            return None
        breaker = self._breakers.get(tool)
        admitted = breaker.allow() if claim else breaker.would_allow()
        if admitted:
            return None
        return Decision.deny(
            f"{tool} circuit is {breaker.state.value} after {breaker.failures} failures", "breaker"
        )

    def _rate_refusal(self, spec: Tool) -> Decision | None:
        # Checked after every refusal that does not depend on load, so a refused call never
        # uses up a slot.
        if self._rate_limits is None or spec.rate_limit is None:
            return None
        max_calls, per_s = spec.rate_limit
        if self._rate_limits.acquire(spec.name, max_calls=max_calls, per_s=per_s):
            return None
        return Decision.deny(
            f"{spec.name} rate limit reached ({max_calls} calls per {_plain(per_s)} s)",
            "rate_limit",
        )

    def _not_deployed(self) -> Decision:
        return Decision.deny(
            f"{self.agent} has no version deployed in the served snapshot", "allowlist"
        )

    def _version_label(self) -> str:
        version = self.version
        return f"{self.agent} v{version.version}" if version else self.agent

    def _note(self, subject: str, decision: Decision) -> Decision:
        if self.shadow:
            decision = replace(decision, shadow=True)
        with self._lock:
            self.decisions.append((subject, decision))
            if decision.outcome == BUDGET_BLOCKED and self.budget_stop is None:
                self.budget_stop = decision
        return decision

    # -- usage the loop records -------------------------------------------------------------

    def record_step(self, *, tokens: int = 0, cost_usd: float | Decimal = 0) -> None:
        """One model call and what it consumed."""
        with self._lock:
            self.usage.steps += 1
            self.usage.total_tokens += tokens
            self.usage.cost_usd += Decimal(str(cost_usd))

    def record_tool_call(self, tool: str, *, ok: bool, executed: bool = True) -> None:
        """One tool call and whether it succeeded (an executed one also feeds the circuit
        breaker). ``executed=False``: recorded, not performed (a shadow run); it counts
        towards the request's limits all the same."""
        with self._lock:
            if self.usage.last_failed.get(tool):
                self.usage.retries[tool] = self.usage.retries.get(tool, 0) + 1
            self.usage.last_failed[tool] = not ok
            self.usage.tool_calls += 1
            if not executed or self.shadow:
                self.usage.not_executed.append(tool)
        if self._breakers is not None and executed:
            breaker = self._breakers.get(tool)
            if ok:
                breaker.record_success()
            else:
                breaker.record_failure()


def _plain(number: float) -> str:
    """``number`` in plain digits, none lost: ``60``, ``0.5``, ``1234567.5``, ``0.0000001``
    (``%g`` keeps six significant digits and switches to exponents: ``1.23457e+06``)."""
    if float(number).is_integer():
        return str(int(number))
    return format(Decimal(repr(float(number))), "f")  # repr: the shortest exact form
