"""A deterministic fake agent whose behaviour follows the bundle it serves.

It does not call a model. It reads a few traits from the bundle — how the prompts talk about
refunds, the model's temperature, which tools exist — and acts on synthetic customer requests
the way a model steered by that bundle plausibly would, calling every tool through the
``RequestGuard``. A prompt that "proactively offers refunds" therefore produces more refund
actions, more denials and approvals, and worse outcomes; a cautious prompt does not. Everything
random comes from a seeded RNG per request, so a run is reproducible.

Budgets: a request a budget or a per-request cap stops is ``budget_blocked`` (its
``error_code`` ``budget:<id>`` or ``cap:<name>``), with what it spent until then. Under a
strict budget the agent reserves before each model step (its expected tokens and cost) and
each tool call (one tool call), and settles what it used after. A prompt that tells the model
to "search until certain" makes it call the lookup tool 80 to 100 times per request: the
runaway loop budgets and caps are there to stop.

Approvals: offline, a call the guard sends to a human waits ``APPROVAL_WAIT_MS`` of simulated
time and a fake human approves exactly the warranted ones. Connected to a control plane
(``LiveApprovals``, what the fleet passes), the call opens a real approval request through
the runtime (``ApprovalGate``: the arguments' hash pinned, sensitive ones redacted) and waits
for a real decision: approved, the call is executed; rejected, the conversation ends
``rejected_by_human``; expired, cancelled, timed out or not opened (the session's limit),
it is escalated to a person. The real wait counts in the request's latency."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..approvals import Approval
from ..gate import ApprovalDenied, ApprovalGate, ApprovalPort, ToolCallRefused
from ..guardrails import BUDGET_BLOCKED, Decision, RequestGuard
from ..snapshot import BundleVersion

# Outcomes, best to worst, with the quality score each is worth.
RESOLVED, ESCALATED, REJECTED, BLOCKED, FAILED, WRONG_ACTION = (
    "resolved",
    "escalated",
    "rejected_by_human",
    "blocked",
    "failed",
    "wrong_action",
)
QUALITY = {
    # stopped by a budget or a per-request cap: worth what a blocked request is
    BUDGET_BLOCKED: 0.4,
    RESOLVED: 1.0,
    ESCALATED: 0.8,
    REJECTED: 0.5,
    BLOCKED: 0.4,
    FAILED: 0.2,
    WRONG_ACTION: 0.0,
}

INTENTS = (
    ("order_status", 0.45),
    ("refund_request", 0.20),
    ("product_question", 0.25),
    ("complaint", 0.10),
)
ROLES = (("customer", 0.75), ("guest", 0.15), ("agent", 0.10))

# USD per million tokens (input, output); the fallback is a mid-priced model.
PRICES: Mapping[str, tuple[Decimal, Decimal]] = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("10")),
    "claude-3-5-sonnet": (Decimal("3"), Decimal("15")),
    "claude-3-5-haiku": (Decimal("0.80"), Decimal("4")),
}
DEFAULT_PRICE = (Decimal("1"), Decimal("3"))
APPROVAL_WAIT_MS = 45_000  # a human looking at an approval request
# Connected, the longest a call waits for a real decision: long enough that the request's own
# expiry (its queue's timeout) decides, as it would for a real runtime, and the queue's
# expiries and escalations happen.
APPROVAL_TIMEOUT_S = 4 * 3600.0

_SENTENCE = re.compile(r"[.!?]+")
_CAUTION = re.compile(r"\b(never|only|not|don't|do not|unless|must not|policy allows)\b")
# The runaway-loop trait: the model keeps looking things up.
SEARCH_LOOP_MARKER = "search until certain"
SEARCH_LOOP_CALLS = (80, 100)
_PUSH = re.compile(r"\b(proactive\w*|offer\w*|always|generous\w*|quickly|whenever|happy)\b")


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in weighted], [weight for _, weight in weighted])[0]


@dataclass(frozen=True)
class SyntheticRequest:
    request_id: str
    session_id: str
    intent: str
    end_user_role: str
    unhappy: bool
    refund_warranted: bool
    order_amount: float
    message: str
    seed: str
    # the end customer's tenant (Unleash context property tenantId): per-tenant canaries
    tenant: str = ""


# End-customer tenants of simulated sessions, for per-tenant canaries (tenantId constraints).
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli")


def synthetic_request(
    rng: random.Random, request_id: str, sessions: int = 1000
) -> SyntheticRequest:
    intent = _pick(rng, INTENTS)
    unhappy = intent in ("complaint", "refund_request") or rng.random() < 0.2
    session = rng.randrange(sessions)
    return SyntheticRequest(
        request_id=request_id,
        session_id=f"session-{session}",
        # from the session, not a fresh draw: a session keeps its tenant, and every other
        # random choice of a seeded run stays what it was
        tenant=TENANTS[session % len(TENANTS)],
        intent=intent,
        end_user_role=_pick(rng, ROLES),
        unhappy=unhappy,
        refund_warranted=intent == "refund_request" and rng.random() < 0.6,
        order_amount=round(rng.uniform(5, 400), 2),
        message=f"synthetic {intent} message",
        seed=f"{request_id}:{rng.random()}",
    )


@dataclass(frozen=True)
class LiveApprovals:
    """Connected mode: calls that need a human open real approval requests through ``port``
    (the simulated runtime's ``Runtime``) and wait for real decisions, at most
    ``timeout_s`` seconds each, and never past the request's expiry (then the request is
    cancelled and the conversation escalated). ``on_wait(approval)`` is called when a request
    is open and its call starts waiting: the fleet then serves other requests meanwhile."""

    port: ApprovalPort
    timeout_s: float = APPROVAL_TIMEOUT_S
    on_wait: Callable[[Approval], None] | None = None


@dataclass(frozen=True)
class Traits:
    """What a model steered by this bundle would tend to do."""

    refund_push: float  # chance of offering a refund nobody is owed
    arg_error_rate: float  # chance of malformed tool arguments (grows with temperature)
    lookup_tool: str | None
    ticket_tool: str | None
    refund_tool: str | None
    prompt_tokens: int
    price: tuple[Decimal, Decimal]
    # "search until certain" in the prompts: 80 to 100 lookups per request
    search_loop: bool = False

    @classmethod
    def of(cls, bundle: Mapping[str, Any]) -> Traits:
        prompts = bundle.get("prompts") or {}
        text = " ".join(
            str(prompt.get("template", ""))
            for prompt in prompts.values()
            if isinstance(prompt, Mapping)
        ).lower()
        push = caution = 0
        for sentence in _SENTENCE.split(text):
            if "refund" not in sentence:
                continue
            if _CAUTION.search(sentence):
                caution += 1
            elif _PUSH.search(sentence):
                push += 1
        model = bundle.get("model") or {}
        temperature = float((model.get("parameters") or {}).get("temperature", 0.7))
        tools = [tool for tool in bundle.get("tools") or [] if isinstance(tool, Mapping)]

        def find(word: str, risk: str | None = None) -> str | None:
            for tool in tools:
                haystack = f"{tool.get('name', '')} {tool.get('description', '')}".lower()
                if word in str(tool.get("name", "")).lower() or (
                    risk is not None and tool.get("risk") == risk and word in haystack
                ):
                    return str(tool["name"])
            return None

        return cls(
            refund_push=min(0.9, max(0.02, 0.05 + 0.45 * push - 0.05 * caution)),
            arg_error_rate=0.01 + 0.08 * temperature,
            lookup_tool=find("lookup") or find("order", risk="read"),
            ticket_tool=find("ticket"),
            refund_tool=find("refund"),
            prompt_tokens=max(50, len(text) // 4),
            price=PRICES.get(str(model.get("name", "")), DEFAULT_PRICE),
            search_loop=SEARCH_LOOP_MARKER in text,
        )


@dataclass
class RequestRecord:
    """The per-request summary a runtime reports (later: ``POST /api/runtime/v1/records``)."""

    request_id: str
    instance_id: str
    agent: str
    version: int | None
    digest: str | None
    role: str | None  # stable | candidate | shadow (the record's variant)
    session_id: str
    outcome: str
    quality: float
    latency_ms: int
    total_tokens: int
    cost_usd: Decimal
    tool_calls: int
    denials: int
    approvals: int
    wrong_actions: int
    tools_called: list[str] = field(default_factory=list)
    # a shadow run's tool calls: recorded, not performed
    not_executed: list[str] = field(default_factory=list)
    # why a budget_blocked request stopped: budget:<id>[:unreachable] or cap:<name>
    error_code: str = ""

    def as_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["cost_usd"] = str(self.cost_usd)
        return data


def _placeholder(schema: Mapping[str, Any]) -> Any:
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind in ("number", "integer"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return "n/a".ljust(int(schema.get("minLength", 0)), "-")


class _Run:
    """One request in flight: the guard, the clock and what happened."""

    def __init__(
        self,
        guard: RequestGuard,
        rng: random.Random,
        traits: Traits,
        tool_failure_rate: float,
        request_id: str = "",
        live: LiveApprovals | None = None,
        request: SyntheticRequest | None = None,
    ):
        self.guard = guard
        self.request_id = request_id
        # A shadow run never asks a human: its calls are not executed anyway.
        self.live = live if not guard.shadow else None
        self.request = request
        self.reservations = 0
        self.rng = rng
        self.traits = traits
        self.tool_failure_rate = tool_failure_rate
        self.latency_ms = 0.0
        self.denials = 0
        self.approvals = 0
        self.wrong_actions = 0
        self.tools_called: list[str] = []
        self.failed = False

    def unfinished(self) -> str:
        """The outcome when a needed action did not happen."""
        return FAILED if self.failed else BLOCKED

    def _price(self) -> tuple[Decimal, Decimal]:
        override = self.guard.model_override  # a degrade budget's cheaper model
        return PRICES.get(override, DEFAULT_PRICE) if override else self.traits.price

    def _reserve(self, estimate: Mapping[str, Any]) -> str | None:
        """Reserve before a step under a strict budget: the reservation id, or None when
        refused (the guard noted it: the request is budget_blocked)."""
        if not any(budget.strict for budget in self.guard.budgets()):
            return ""  # nothing to reserve: no call, no settle
        self.reservations += 1
        reservation_id = f"{self.request_id}:{self.reservations}"
        result = self.guard.reserve(
            reservation_id=reservation_id, request_id=self.request_id, estimate=estimate
        )
        return reservation_id if result.granted else None

    def step(self) -> bool:
        if not self.guard.check_step().allowed:
            self.denials += 1
            return False
        price_in, price_out = self._price()
        # the expected step (mean draws), reserved before the step is taken
        expected_in, expected_out = self.traits.prompt_tokens + 250, 170
        reservation = self._reserve(
            {
                "tokens": expected_in + expected_out,
                "cost_usd": (price_in * expected_in + price_out * expected_out)
                / Decimal(1_000_000),
            }
        )
        if reservation is None:
            self.denials += 1
            return False
        tokens_in = self.traits.prompt_tokens + self.rng.randint(100, 400)
        tokens_out = self.rng.randint(40, 300)
        cost = (price_in * tokens_in + price_out * tokens_out) / Decimal(1_000_000)
        self.guard.record_step(tokens=tokens_in + tokens_out, cost_usd=cost)
        self.latency_ms += self.rng.uniform(250, 600) + tokens_out * 4
        if reservation:
            self.guard.settle(
                reservation_id=reservation,
                actual={"tokens": tokens_in + tokens_out, "cost_usd": cost},
            )
        return True

    def call(
        self, tool: str, arguments: dict[str, Any], *, confidence: float, warranted: bool
    ) -> str:
        """Run one tool call through the guard: 'done', 'denied', 'rejected' or 'failed'."""
        arguments = self._fit(tool, arguments)
        if self.rng.random() < self.traits.arg_error_rate:
            # A sloppy model drops an argument; the schema check refuses, the model corrects it.
            broken = dict(arguments)
            if broken:
                broken.pop(sorted(broken)[0])
            if self._decide(tool, broken, confidence).denied:
                self.denials += 1
                if not self.step():
                    return "denied"
        for attempt in range(3):
            decision = self._decide(tool, arguments, confidence)
            if decision.needs_approval:
                self.approvals += 1
                if self.live is not None:
                    return self._call_live(tool, arguments, confidence, decision)
                self.latency_ms += APPROVAL_WAIT_MS
                if not warranted:
                    return "rejected"
                decision = self._decide(tool, arguments, confidence, approved=True)
            if not decision.allowed:
                self.denials += 1
                return "denied"
            result = self._perform(tool, executable=decision.executable)
            if result != "failed":
                return result
            if attempt < 2 and not self.step():
                break
        self.failed = True
        return "failed"

    def _perform(self, tool: str, *, executable: bool) -> str:
        """The allowed call itself: 'done', 'failed', or 'denied' (its reservation refused)."""
        reservation = self._reserve({"tool_calls": 1})
        if reservation is None:
            self.denials += 1
            return "denied"
        self.latency_ms += self.rng.uniform(40, 160)
        ok = self.rng.random() >= self.tool_failure_rate
        if executable:
            self.tools_called.append(tool)
            self.guard.record_tool_call(tool, ok=ok)
        else:
            # A shadow run: the call is recorded, never performed. Its simulated result
            # draws from the same odds, so shadow and stable records compare like for like.
            self.guard.record_tool_call(tool, ok=ok, executed=False)
        if reservation:
            self.guard.settle(reservation_id=reservation, actual={"tool_calls": 1})
        return "done" if ok else "failed"

    def _call_live(
        self, tool: str, arguments: dict[str, Any], confidence: float, decision: Decision
    ) -> str:
        """A call that needs a human, connected: a real approval request, a real wait, and
        the call executed only as approved. 'done' / 'failed' as executed, 'rejected' by a
        human, 'escalated' when no decision came (expired, cancelled, timed out, not
        opened), 'denied' when the guard or the pinning refused."""
        assert self.live is not None
        gate = ApprovalGate(
            self.live.port, self.guard, request_id=self.request_id, timeout_s=self.live.timeout_s
        )
        started = time.monotonic()
        try:
            for attempt in range(3):
                try:
                    # A retry after a failed execution finds the same, approved, request
                    # (same idempotency key): one human decision covers the retries.
                    result = gate.call(
                        tool,
                        arguments,
                        lambda _approved: self._perform(tool, executable=True),
                        confidence=confidence,
                        decision=decision if attempt == 0 else None,
                        reason=self._reason(tool, arguments, confidence),
                        excerpt=self._excerpt(tool, arguments),
                        discriminator=f"{self.request_id}:{tool}",
                        on_wait=self.live.on_wait,
                    )
                except ApprovalDenied as refused:
                    return "rejected" if refused.code == "rejected" else "escalated"
                except ToolCallRefused as refused:
                    if refused.code in ("denied", "mismatch", "shadow"):
                        self.denials += 1
                        return "denied"
                    return "escalated"
                if result != "failed":
                    return result
                if attempt < 2 and not self.step():
                    break
            self.failed = True
            return "failed"
        finally:
            self.latency_ms += (time.monotonic() - started) * 1000

    def _reason(self, tool: str, arguments: Mapping[str, Any], confidence: float) -> str:
        amount = arguments.get("amount")
        what = [tool]
        if amount is not None:
            what.append(f"{amount} {arguments.get('currency', '')}".strip())
        what.append(f"for order {arguments.get('order_id', '?')}:")
        intent = self.request.intent.replace("_", " ") if self.request else "request"
        return (
            f"{' '.join(what)} the customer's {intent}; "
            f"my confidence that it is within policy is {confidence:.2f}"
        )

    def _excerpt(self, tool: str, arguments: Mapping[str, Any]) -> list[dict[str, str]]:
        if self.request is None:
            return []
        return [
            {"role": "user", "content": self.request.message},
            {"role": "assistant", "content": f"Looking up order {arguments.get('order_id')}."},
            {"role": "assistant", "content": f"I would like to call {tool}; asking a person."},
        ]

    def _fit(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Shape the arguments to the tool's declared parameters, as a model reading the tool
        contract would: drop what it does not take, fill what it requires."""
        spec = self.guard.policy.tools.get(tool) if self.guard.policy else None
        if spec is None:
            return arguments
        schema = spec.spec.get("parameters") or {}
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return arguments
        fitted = {key: value for key, value in arguments.items() if key in properties}
        for key in schema.get("required") or []:
            if key not in fitted:
                fitted[key] = _placeholder(properties.get(key) or {})
        for key, value in list(fitted.items()):
            allowed = (properties.get(key) or {}).get("enum")
            if isinstance(allowed, list) and allowed and value not in allowed:
                fitted[key] = allowed[0]
        return fitted

    def _decide(
        self, tool: str, arguments: Mapping[str, Any], confidence: float, *, approved: bool = False
    ) -> Decision:
        return self.guard.check_tool_call(tool, arguments, confidence=confidence, approved=approved)


class FakeAgent:
    """Handles synthetic requests for one agent the way its served bundle steers it."""

    def __init__(self, agent: str, *, tool_failure_rate: float = 0.02) -> None:
        self.agent = agent
        self.tool_failure_rate = tool_failure_rate
        self._traits: dict[str, Traits] = {}

    def traits(self, version: BundleVersion) -> Traits:
        traits = self._traits.get(version.digest)
        if traits is None:
            traits = self._traits[version.digest] = Traits.of(version.bundle)
        return traits

    def handle(
        self,
        request: SyntheticRequest,
        guard: RequestGuard,
        instance_id: str = "",
        approvals: LiveApprovals | None = None,
    ) -> RequestRecord:
        """Serve ``request`` with the version ``guard`` chose. A shadow guard
        (``Runtime.shadow_guard``) gives the candidate's shadow record: same request and
        randomness as the live one, ``role`` ``shadow``, request id suffixed ``:shadow``,
        its tool calls in ``not_executed``. ``approvals``: connected mode, calls that need
        a human wait for real decisions (see the module docstring); None: the fake human
        (a shadow run always has the fake one: it asks nobody)."""
        rng = random.Random(request.seed)
        version = guard.version
        request_id = f"{request.request_id}:shadow" if guard.shadow else request.request_id
        outcome = BLOCKED
        run: _Run | None = None
        if version is not None:
            run = _Run(
                guard,
                rng,
                self.traits(version),
                self.tool_failure_rate,
                request_id,
                live=approvals,
                request=request,
            )
            outcome = self._converse(request, run)
        stop = guard.budget_stop
        if stop is not None:
            # A budget, a cap or a refused reservation ended the request (or cut what it
            # did short): that is what its record says, with what it spent until then.
            outcome = BUDGET_BLOCKED
        usage = guard.usage
        return RequestRecord(
            request_id=request_id,
            instance_id=instance_id,
            agent=self.agent,
            version=version.version if version else None,
            digest=version.digest if version else None,
            role=version.role if version else None,
            session_id=request.session_id,
            outcome=outcome,
            quality=QUALITY[outcome],
            latency_ms=int(run.latency_ms) if run else 0,
            total_tokens=usage.total_tokens,
            cost_usd=usage.cost_usd,
            tool_calls=usage.tool_calls,
            denials=run.denials if run else 1,
            approvals=run.approvals if run else 0,
            wrong_actions=run.wrong_actions if run else 0,
            tools_called=run.tools_called if run else [],
            not_executed=list(usage.not_executed),
            error_code=stop.error_code if stop is not None else "",
        )

    def _converse(self, request: SyntheticRequest, run: _Run) -> str:
        traits, rng = run.traits, run.rng
        if not run.guard.check_input(request.message).allowed or not run.step():
            run.denials += 1
            return BLOCKED
        confidence = round(rng.uniform(0.6, 1.0), 2)
        order_id = f"A{rng.randrange(10**8):08d}"

        def needed(tool: str, purpose: str, *, warranted: bool = True) -> str:
            return run.call(
                tool,
                self._args(request, order_id, purpose),
                confidence=confidence,
                warranted=warranted,
            )

        if traits.search_loop and traits.lookup_tool:
            # The runaway loop: look up again and again, a model step after each, until the
            # count is done or a cap, a budget or a refusal stops it.
            for _ in range(rng.randint(*SEARCH_LOOP_CALLS)):
                if needed(traits.lookup_tool, "lookup") != "done":
                    return run.unfinished()
                if not run.step():
                    return BLOCKED
        elif request.intent != "product_question" and traits.lookup_tool:
            if needed(traits.lookup_tool, "lookup") != "done":
                return run.unfinished()
            if not run.step():
                return BLOCKED
        complaint_ticket = request.intent == "complaint" and traits.ticket_tool
        if complaint_ticket and needed(str(traits.ticket_tool), "complaints") != "done":
            return run.unfinished()
        owed = request.refund_warranted
        if request.intent == "refund_request":
            if traits.refund_tool:
                # A refund tool is decided on: owed refunds go through, and a refund-happy
                # prompt sometimes pays one that is not owed.
                if owed or rng.random() < traits.refund_push:
                    result = needed(traits.refund_tool, "refunds", warranted=owed)
                    if result == "rejected":
                        return REJECTED
                    if result == "escalated":
                        return ESCALATED  # no decision came: a person takes the case over
                    if result == "done" and not owed:
                        run.wrong_actions += 1
                    elif result != "done":
                        return run.unfinished()
            elif traits.ticket_tool and needed(traits.ticket_tool, "refunds") != "done":
                # Without a refund tool the right move is a ticket for the refunds team.
                return run.unfinished()
        # The bundle's pull towards refunds: offering one to an unhappy customer who is not
        # owed one. With a refund tool the model calls it; otherwise it promises the refund in
        # a ticket, and now and then invents the refund tool it was told to "offer".
        decided = request.intent == "refund_request" and traits.refund_tool is not None
        if request.unhappy and not owed and not decided and rng.random() < traits.refund_push:
            tool = traits.refund_tool or (
                "issue_refund" if rng.random() < 0.3 else traits.ticket_tool
            )
            if tool and needed(tool, "refunds", warranted=False) == "done":
                run.wrong_actions += 1
        if run.wrong_actions:
            return WRONG_ACTION
        if not run.step():
            return BLOCKED
        return ESCALATED if run.approvals else RESOLVED

    @staticmethod
    def _args(request: SyntheticRequest, order_id: str, purpose: str) -> dict[str, Any]:
        if purpose == "lookup":
            return {"order_id": order_id}
        args: dict[str, Any] = {
            "order_id": order_id,
            "team": purpose,
            "summary": f"{request.intent} from a {request.end_user_role} about {order_id}",
        }
        if purpose == "refunds":
            args.update(
                amount=request.order_amount,
                currency="EUR",
                reason=f"customer {request.intent.replace('_', ' ')} for order {order_id}",
                idempotency_key=f"{request.request_id}-refund".ljust(16, "0"),
            )
        return args
