"""The reference runtime library: what an agent runtime embeds to obey the control plane.

Pure Python, no Django: it speaks the HTTP contract in docs/runtime-api.md. An import-linter
contract in pyproject.toml keeps it that way."""

from ._version import __version__
from .approvals import (
    Approval,
    ApprovalConflict,
    ApprovalError,
    ApprovalRefused,
    ApprovalUnavailable,
    arguments_sha256,
)
from .breaker import BreakerBoard, BreakerState, CircuitBreaker
from .budgets import BudgetRefusal, ReserveResult, SettleResult
from .client import Backoff, ConfigSync, Runtime, SyncStatus
from .gate import (
    ApprovalDenied,
    ApprovalGate,
    ApprovalMismatch,
    ApprovalNotOpened,
    ApprovalTimedOut,
    GuardDenied,
    ToolCallRefused,
)
from .guardrails import (
    BUDGET_BLOCKED,
    BudgetPort,
    Decision,
    RequestContext,
    RequestGuard,
    Verdict,
    choose_version,
)
from .snapshot import Budget, BudgetLimits, BundleVersion, Degrade, KillSwitch, Snapshot
from .verify import KeyRing, KeysUnavailable, VerificationError

__all__ = [
    "BUDGET_BLOCKED",
    "Approval",
    "ApprovalConflict",
    "ApprovalDenied",
    "ApprovalError",
    "ApprovalGate",
    "ApprovalMismatch",
    "ApprovalNotOpened",
    "ApprovalRefused",
    "ApprovalTimedOut",
    "ApprovalUnavailable",
    "Backoff",
    "BreakerBoard",
    "BreakerState",
    "Budget",
    "BudgetLimits",
    "BudgetPort",
    "BudgetRefusal",
    "BundleVersion",
    "CircuitBreaker",
    "ConfigSync",
    "Decision",
    "Degrade",
    "GuardDenied",
    "KeyRing",
    "KeysUnavailable",
    "KillSwitch",
    "RequestContext",
    "RequestGuard",
    "ReserveResult",
    "Runtime",
    "SettleResult",
    "Snapshot",
    "SyncStatus",
    "ToolCallRefused",
    "Verdict",
    "VerificationError",
    "__version__",
    "arguments_sha256",
    "choose_version",
]
