"""The reference runtime library: what an agent runtime embeds to obey the control plane.

Pure Python, no Django: it speaks the HTTP contract in docs/runtime-api.md. An import-linter
contract in pyproject.toml keeps it that way."""

from ._version import __version__
from .breaker import BreakerBoard, BreakerState, CircuitBreaker
from .client import Backoff, ConfigSync, Runtime, SyncStatus
from .guardrails import Decision, RequestContext, RequestGuard, Verdict, choose_version
from .snapshot import BundleVersion, KillSwitch, Snapshot
from .verify import KeyRing, KeysUnavailable, VerificationError

__all__ = [
    "Backoff",
    "BreakerBoard",
    "BreakerState",
    "BundleVersion",
    "CircuitBreaker",
    "ConfigSync",
    "Decision",
    "KeyRing",
    "KeysUnavailable",
    "KillSwitch",
    "RequestContext",
    "RequestGuard",
    "Runtime",
    "Snapshot",
    "SyncStatus",
    "Verdict",
    "VerificationError",
    "__version__",
    "choose_version",
]
