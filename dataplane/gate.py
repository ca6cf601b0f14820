"""The guarded tool call: ask the guard, wait for a human when it says so, execute only what
was approved.

``ApprovalGate.call`` is the agent loop's one call for a tool that may need approval:

1. the guard decides (``RequestGuard.check_tool_call``): a refusal is final, an ``allow``
   executes at once;
2. ``needs_approval``: an approval request is opened (``Runtime.approval_request``; the
   arguments' hash over their canonical JSON, sensitive arguments redacted), and the call
   blocks until it is decided, for at most the caller's timeout and never past the request's
   ``expires_at`` (plus a grace for the control plane to record the expiry);
3. the call executes only when the request was **approved**, the sha256 of the canonical
   arguments about to be executed equals the approved ``arguments_sha256`` (argument-hash
   pinning: changed arguments need a new approval) and the guard, asked again with
   ``approved=True``, allows it (a kill switch engaged or a budget exhausted while the human
   was deciding still wins).

Everything else refuses with a ``ToolCallRefused`` and never executes: rejected, expired or
cancelled requests, a mismatch, the runtime giving up waiting (it then cancels the request:
the safe default is deny), a request the control plane would not open."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from .approvals import (
    RISKS,
    Approval,
    ApprovalError,
    ApprovalRefused,
    arguments_sha256,
    sensitive_args_of,
)
from .guardrails import Decision, RequestGuard

log = logging.getLogger("dataplane.approvals")

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_EXPIRY_GRACE_S = 60.0


class ToolCallRefused(Exception):
    """The tool call was not executed. ``code`` says why: ``denied`` (the guard refused,
    before or after the approval), ``rejected`` / ``expired`` / ``cancelled`` (the request's
    final state), ``mismatch`` (the approval does not cover this call), ``timeout`` (the
    runtime stopped waiting and cancelled the request), ``session_limit`` / ``error`` (no
    request could be opened), ``shadow`` (a shadow run executes nothing). ``reason`` is a
    sentence for the conversation or the log; ``decision`` the guard's last decision;
    ``approval`` the request as last seen (None when none was opened)."""

    code = "refused"

    def __init__(
        self,
        reason: str,
        *,
        code: str | None = None,
        decision: Decision | None = None,
        approval: Approval | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code
        self.decision = decision
        self.approval = approval


class GuardDenied(ToolCallRefused):
    """The guard refused the call (before asking a human, or on the re-check after)."""

    code = "denied"


class ApprovalDenied(ToolCallRefused):
    """The request ended ``rejected``, ``expired`` or ``cancelled`` (``code`` is that
    status); the reason names who decided and their comment."""


class ApprovalMismatch(ToolCallRefused):
    """The approval does not cover the call about to run: other arguments (their canonical
    sha256 differs from the approved ``arguments_sha256``), another tool or another session.
    A new approval is needed."""

    code = "mismatch"


class ApprovalTimedOut(ToolCallRefused):
    """The runtime stopped waiting before a decision (the caller's timeout, the request's
    expiry, the control plane unreachable, the runtime stopping) and cancelled the
    request."""

    code = "timeout"


class ApprovalNotOpened(ToolCallRefused):
    """No request could be opened: ``session_limit`` (429, the session has its queue's
    limit of open requests; ``error`` is the ``ApprovalRefused``) or ``error`` (the control
    plane refused the call or could not be reached; ``error`` says which)."""

    def __init__(self, reason: str, *, code: str, error: Exception, decision: Decision) -> None:
        super().__init__(reason, code=code, decision=decision)
        self.error = error


class ApprovalPort(Protocol):
    """What the gate needs from its runtime (``client.Runtime`` is one)."""

    def approval_request(
        self,
        agent: str,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        session_id: str,
        reason: str = "",
        excerpt: Iterable[Mapping[str, Any]] = (),
        risk: str | None = None,
        rule: str = "",
        request_id: str | None = None,
        requested_by: str | None = None,
        idempotency_key: str | None = None,
        discriminator: str = "",
        bundle_version: int | None = None,
        sensitive_args: Iterable[str] | None = None,
    ) -> Approval: ...

    def approval_wait(self, approval_id: int, timeout_s: float) -> Approval: ...

    def approval_cancel(self, approval_id: int, reason: str = "") -> Approval: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ApprovalGate:
    """Tool calls of one request that wait for a human when the guard says so (see the module
    docstring). ``port``: the runtime (``Runtime.approval_gate(guard)`` builds one);
    ``guard``: the request's guard; ``request_id`` (telemetry) and ``requested_by`` (the human
    the agent acts for, who may not approve) go into every request; ``timeout_s``: how long
    (seconds) a call waits for a decision at most, by default; ``expiry_grace_s``: how long
    past a request's ``expires_at`` the gate still waits for the control plane to record the
    expiry before cancelling itself; ``clock``: the aware "now" ``expires_at`` is compared
    with."""

    def __init__(
        self,
        port: ApprovalPort,
        guard: RequestGuard,
        *,
        request_id: str | None = None,
        requested_by: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        expiry_grace_s: float = DEFAULT_EXPIRY_GRACE_S,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if timeout_s < 0 or expiry_grace_s < 0:
            raise ValueError("timeout_s and expiry_grace_s must not be negative")
        self.port = port
        self.guard = guard
        self.request_id = request_id
        self.requested_by = requested_by
        self.timeout_s = timeout_s
        self.expiry_grace_s = expiry_grace_s
        self._clock = clock or _utcnow

    def call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        execute: Callable[[dict[str, Any]], T],
        *,
        confidence: float | None = None,
        decision: Decision | None = None,
        reason: str = "",
        excerpt: Iterable[Mapping[str, Any]] = (),
        discriminator: str = "",
        timeout_s: float | None = None,
        on_wait: Callable[[Approval], None] | None = None,
    ) -> T:
        """Run ``execute(arguments)`` if the guard allows the call, at once or after a human
        approved exactly these arguments; return what ``execute`` returns (its exceptions
        propagate). ``execute`` receives a private deep copy of ``arguments``: the ones
        hashed, approved and re-checked, which changing the caller's mapping meanwhile
        cannot touch.

        ``decision``: the guard's verdict when the loop already asked (not asked again);
        ``reason``: the agent's stated reason shown to the approver (default: the guard's);
        ``excerpt``: the conversation turns shown (``{"role", "content"}``, last 20 kept);
        ``discriminator``: tells apart two identical calls of one request that need an
        approval each (the call's index, say; the gate's ``request_id`` already tells
        requests apart); ``timeout_s``: this call's
        wait bound in seconds (default the gate's); ``on_wait(approval)``: called once the
        request is open, before blocking (the simulator uses it to serve other requests).

        Raises ``ToolCallRefused`` (a subclass naming why) whenever ``execute`` was not
        called; ValueError/CanonicalError for arguments that are not JSON."""
        pinned = copy.deepcopy(dict(arguments))
        arguments_sha256(pinned)  # not JSON: refused before anything is asked
        if decision is None:
            decision = self.guard.check_tool_call(tool, pinned, confidence=confidence)
        if decision.denied:
            raise GuardDenied(decision.reason, decision=decision)
        if decision.executable:
            return execute(pinned)
        if decision.allowed or self.guard.shadow:
            raise ToolCallRefused(
                f"{tool} not executed: a shadow run executes nothing",
                code="shadow",
                decision=decision,
            )
        approval = self.request(
            tool,
            pinned,
            decision=decision,
            reason=reason,
            excerpt=excerpt,
            discriminator=discriminator,
        )
        if on_wait is not None and approval.pending:
            on_wait(approval)
        approval = self.wait(approval, timeout_s=timeout_s)
        return self.execute_approved(approval, tool, pinned, execute, confidence=confidence)

    def request(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        decision: Decision,
        reason: str = "",
        excerpt: Iterable[Mapping[str, Any]] = (),
        discriminator: str = "",
    ) -> Approval:
        """Open (or, for a repeat, find again) the approval request for this call, with the
        tool contract's risk and ``sensitive_args`` and the served version from the guard,
        and ``decision.reason`` as the rule that asked. Raises ``ApprovalNotOpened``
        (``session_limit`` for a 429, ``error`` otherwise)."""
        policy = self.guard.policy
        spec = policy.tools.get(tool) if policy is not None else None
        version = self.guard.version
        try:
            return self.port.approval_request(
                self.guard.agent,
                tool,
                arguments,
                session_id=self.guard.session_id,
                reason=reason or decision.reason,
                excerpt=excerpt,
                risk=spec.risk if spec is not None and spec.risk in RISKS else None,
                rule=decision.reason,
                request_id=self.request_id,
                requested_by=self.requested_by,
                discriminator=discriminator,
                bundle_version=version.version if version is not None else None,
                sensitive_args=sensitive_args_of(spec.spec) if spec is not None else (),
            )
        except ApprovalRefused as exc:
            raise ApprovalNotOpened(
                f"{tool} not executed: {exc.detail}",
                code="session_limit",
                error=exc,
                decision=decision,
            ) from exc
        except (ApprovalError, ValueError) as exc:
            raise ApprovalNotOpened(
                f"{tool} not executed: no approval request could be opened ({exc})",
                code="error",
                error=exc,
                decision=decision,
            ) from exc

    def wait(self, approval: Approval, *, timeout_s: float | None = None) -> Approval:
        """Block until ``approval`` is final; return it in its final state (approved or
        not: ``execute_approved`` decides). Waits at most ``timeout_s`` seconds (default
        the gate's) and at most until ``expires_at`` plus the expiry grace. When it gives up
        (or the control plane cannot be reached throughout) it cancels the request and
        raises ``ApprovalTimedOut``; a request that turns out rejected or expired at that
        moment is returned as such. An approval that arrives only with the cancel's answer
        is not used: the caller's deadline had passed."""
        if approval.final:
            return approval
        budget = self.timeout_s if timeout_s is None else timeout_s
        until_expiry = (approval.expires_at - self._clock()).total_seconds()
        budget = max(0.0, min(budget, until_expiry + self.expiry_grace_s))
        deadline = time.monotonic() + budget
        current = approval
        failure: Exception | None = None
        while not current.final:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                current = self.port.approval_wait(approval.id, remaining)
            except ApprovalError as exc:
                failure = exc
                break
        if current.final:
            return current
        why = (
            f"the control plane could not be asked ({failure})"
            if failure is not None
            else f"no decision within {budget:.0f} s"
        )
        try:
            cancelled = self.port.approval_cancel(approval.id, f"runtime stopped waiting: {why}")
        except ApprovalError as exc:
            log.warning(
                "approval.cancel_failed", extra={"approval": approval.id, "error": str(exc)}
            )
            cancelled = current
        if cancelled.final and cancelled.status in ("rejected", "expired"):
            return cancelled
        if cancelled.status == "approved":
            log.warning(
                "approval.approved_too_late",
                extra={"approval": approval.id, "decided_by": list(cancelled.decided_by)},
            )
        raise ApprovalTimedOut(
            f"{approval.tool} not executed: {why}; approval #{approval.id} cancelled",
            approval=cancelled,
        ) from failure

    def execute_approved(
        self,
        approval: Approval,
        tool: str,
        arguments: Mapping[str, Any],
        execute: Callable[[dict[str, Any]], T],
        *,
        confidence: float | None = None,
    ) -> T:
        """Run ``execute`` on (a deep copy of) ``arguments`` if ``approval`` allows exactly
        this call: approved (``ApprovalDenied`` otherwise), for this tool and session, and
        the sha256 of the canonical ``arguments`` equals its ``arguments_sha256``
        (``ApprovalMismatch`` otherwise: a new approval is needed); then the guard, asked
        again with ``approved=True``, must allow it (``GuardDenied`` otherwise). ValueError
        for a request still pending."""
        if approval.pending:
            raise ValueError(f"approval #{approval.id} is still pending")
        if not approval.allowed:
            raise ApprovalDenied(
                f"{tool} not executed: {approval.describe()}",
                code=approval.status,
                approval=approval,
            )
        pinned = copy.deepcopy(dict(arguments))
        if approval.tool != tool:
            raise ApprovalMismatch(
                f"{tool} not executed: approval #{approval.id} is for {approval.tool}",
                approval=approval,
            )
        if approval.session_id and approval.session_id != self.guard.session_id:
            raise ApprovalMismatch(
                f"{tool} not executed: approval #{approval.id} is for session "
                f"{approval.session_id}, not {self.guard.session_id}",
                approval=approval,
            )
        digest = arguments_sha256(pinned)
        if digest != approval.arguments_sha256:
            raise ApprovalMismatch(
                f"{tool} not executed: its arguments changed after approval #{approval.id} "
                f"(approved sha256 {approval.arguments_sha256[:12]}…, these "
                f"{digest[:12]}…); changed arguments need a new approval",
                approval=approval,
            )
        decision = self.guard.check_tool_call(tool, pinned, confidence=confidence, approved=True)
        if not decision.executable:
            raise GuardDenied(
                f"{tool} not executed after approval #{approval.id}: {decision.reason}",
                decision=decision,
                approval=approval,
            )
        log.info(
            "approval.executing",
            extra={"approval": approval.id, "tool": tool, "decided_by": list(approval.decided_by)},
        )
        return execute(pinned)
