"""The fleet simulator: N runtimes and a fake agent whose behaviour follows its bundle.

``python -m dataplane.simulate --help`` runs it against a control plane; ``run_requests`` runs
the same agent against a snapshot in memory."""

from .agent import FakeAgent, RequestRecord, SyntheticRequest, Traits, synthetic_request
from .fleet import Fleet, RecordReporter, SimulatedRuntime
from .offline import run_requests, snapshot_for
from .stats import VersionStats, format_table, outcome_stats

__all__ = [
    "FakeAgent",
    "Fleet",
    "RecordReporter",
    "RequestRecord",
    "SimulatedRuntime",
    "SyntheticRequest",
    "Traits",
    "VersionStats",
    "format_table",
    "outcome_stats",
    "run_requests",
    "snapshot_for",
    "synthetic_request",
]
