"""Per-version outcome statistics: the evidence a canary decision rests on."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .agent import RESOLVED, WRONG_ACTION, RequestRecord

VersionKey = tuple[str, int | None]  # (agent, version); None = nothing was deployed


def _percentile(sorted_values: list[int], fraction: float) -> int:
    if not sorted_values:
        return 0
    # Nearest-rank: the smallest value with at least `fraction` of the sample at or below it.
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class VersionStats:
    agent: str
    version: int | None
    requests: int
    outcomes: dict[str, int] = field(default_factory=dict)
    success_rate: float = 0.0  # share of requests resolved without a human
    wrong_action_rate: float = 0.0  # share of requests with an action nobody was owed
    mean_quality: float = 0.0
    denials: int = 0
    approvals: int = 0
    tool_calls: int = 0
    total_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    p50_latency_ms: int = 0
    p95_latency_ms: int = 0

    def as_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["cost_usd"] = str(self.cost_usd)
        return data


def outcome_stats(records: Iterable[RequestRecord]) -> dict[VersionKey, VersionStats]:
    groups: dict[VersionKey, list[RequestRecord]] = {}
    for record in records:
        groups.setdefault((record.agent, record.version), []).append(record)
    result = {}
    for (agent, version), group in sorted(
        groups.items(), key=lambda item: (item[0][0], item[0][1] or 0)
    ):
        count = len(group)
        outcomes = Counter(record.outcome for record in group)
        latencies = sorted(record.latency_ms for record in group)
        result[(agent, version)] = VersionStats(
            agent=agent,
            version=version,
            requests=count,
            outcomes=dict(sorted(outcomes.items())),
            success_rate=outcomes[RESOLVED] / count,
            wrong_action_rate=outcomes[WRONG_ACTION] / count,
            mean_quality=sum(record.quality for record in group) / count,
            denials=sum(record.denials for record in group),
            approvals=sum(record.approvals for record in group),
            tool_calls=sum(record.tool_calls for record in group),
            total_tokens=sum(record.total_tokens for record in group),
            cost_usd=sum((record.cost_usd for record in group), Decimal(0)),
            p50_latency_ms=_percentile(latencies, 0.5),
            p95_latency_ms=_percentile(latencies, 0.95),
        )
    return result


def format_table(stats: dict[VersionKey, VersionStats]) -> str:
    header = (
        f"{'agent':<16} {'ver':>4} {'requests':>8} {'success':>8} {'wrong':>7} {'quality':>8} "
        f"{'denials':>8} {'approvals':>9} {'cost $':>9} {'p50 ms':>8}"
    )
    lines = [header]
    for item in stats.values():
        lines.append(
            f"{item.agent:<16} {item.version if item.version is not None else '-':>4} "
            f"{item.requests:>8} {item.success_rate:>8.1%} {item.wrong_action_rate:>7.1%} "
            f"{item.mean_quality:>8.3f} {item.denials:>8} {item.approvals:>9} "
            f"{item.cost_usd:>9.4f} {item.p50_latency_ms:>8}"
        )
    return "\n".join(lines)
