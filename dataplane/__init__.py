"""The reference runtime library: what an agent runtime embeds to obey the control plane.

Pure Python, no Django: it speaks the HTTP contract in docs/runtime-api.md. An import-linter
contract in pyproject.toml keeps it that way."""

from ._version import __version__
from .breaker import BreakerBoard, BreakerState, CircuitBreaker
from .budgets import BudgetRefusal, ReserveResult, SettleResult
from .client import Backoff, ConfigSync, Runtime, SyncStatus
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
    "Verdict",
    "VerificationError",
    "__version__",
    "choose_version",
]
