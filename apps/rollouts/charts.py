"""plotly figures for the rollout page: candidate against stable, one small chart per metric
of the rollout's plan, with the band the candidate may reach before the metric fails
(stable x the tolerated ratio), shaded. Built from minute rollups read through
``apps.telemetry.selectors.telemetry_series``; drawn by the locally served plotly.js through
``static/js/app.js`` (``apps.core.charts.figure_html``).

Stable is always blue and candidate always amber, as on the Telemetry page (UI.md: the same
colours everywhere); shadow traffic is the candidate's and is drawn as the candidate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any

import plotly.graph_objects as go

from apps.telemetry.selectors import Series, Stats

from .plans import METRIC_LABELS

STABLE_COLOUR = "#2563eb"
CANDIDATE_COLOUR = "#d97706"
BAND_COLOUR = "rgba(37, 99, 235, 0.12)"
MIN_SPAN = timedelta(minutes=15)
MARGIN = timedelta(minutes=1)
_LAYOUT: dict[str, Any] = {
    "height": 240,
    "margin": {"l": 60, "r": 16, "t": 46, "b": 36},
    "legend": {"orientation": "h", "y": -0.28},
    "plot_bgcolor": "#ffffff",
    "yaxis": {"rangemode": "tozero", "gridcolor": "#e2e8f0"},
    "hovermode": "x unified",
}


def _share(count: Callable[[Stats], float]) -> Callable[[Stats], float | None]:
    return lambda s: 100 * count(s) / s.requests if s.requests else None


def _wrong_actions(stats: Stats) -> float | None:
    # Reported only by runtimes that know which actions were wrong; older rollups lack it.
    wrong = getattr(stats, "wrong_actions", None)
    return None if wrong is None or not stats.requests else 100 * wrong / stats.requests


# metric -> (the chart's question, y-axis unit, value of one minute; None leaves a gap)
METRIC_VALUES: dict[str, tuple[str, str, Callable[[Stats], float | None]]] = {
    "error_rate": (
        "Does the candidate fail more often? (error rate, %)",
        "% errors",
        _share(lambda s: s.errors),
    ),
    "policy_denied_rate": (
        "Does it hit the policy more often? (policy denials, %)",
        "% denied",
        _share(lambda s: s.counts.get("policy_denied", 0)),
    ),
    "escalated_rate": (
        "Does it hand over to humans more often? (escalations, %)",
        "% escalated",
        _share(lambda s: s.counts.get("escalated", 0)),
    ),
    "tool_failure_rate": (
        "Do its tool calls fail more often? (tool failures per request, %)",
        "% of requests",
        _share(lambda s: s.tool_failures),
    ),
    "wrong_action_rate": (
        "Does it take more wrong actions? (wrong actions, %)",
        "% wrong",
        _wrong_actions,
    ),
    "latency_p95": ("Is it slower? (p95 latency, ms)", "ms", lambda s: s.p95_ms),
    "cost_per_request": (
        "Does a request cost more? (USD per request)",
        "USD",
        lambda s: None if s.cost_per_request is None else float(s.cost_per_request),
    ),
}


def _add(into: Stats, other: Stats) -> None:
    """Sum ``other`` into ``into`` (two variants of one side in the same minute: shadow and
    candidate traffic of the candidate)."""
    into.requests += other.requests
    for outcome, count in other.counts.items():
        into.counts[outcome] = into.counts.get(outcome, 0) + count
    for name in ("latency_sum_ms", "tokens_in", "tokens_out", "cost_usd", "tool_calls"):
        setattr(into, name, getattr(into, name) + getattr(other, name))
    into.tool_failures += other.tool_failures
    if hasattr(other, "wrong_actions"):
        # not a Stats field (yet): the column exists only where runtimes report it
        setattr(into, "wrong_actions", getattr(into, "wrong_actions", 0) + other.wrong_actions)  # noqa: B010
    if other.sketch.count:
        into.sketch.merge(other.sketch)


def rollout_figures(
    *,
    metrics: list[dict[str, Any]],
    stable: list[Series],
    candidate: list[Series],
    tz: tzinfo,
    start: datetime,
    end: datetime,
) -> list[tuple[str, str, go.Figure]]:
    """``(metric, accessible name, figure)`` per metric of the plan that can be drawn: the
    candidate's and the stable version's value per minute, and the tolerated band from the
    stable value to stable x ``tolerated_ratio``. A metric no rollup carries (wrong actions,
    before runtimes report them) is left out. Empty without any request."""
    stable_minutes = _minutes(stable)
    candidate_minutes = _minutes(candidate)
    if not stable_minutes and not candidate_minutes:
        return []
    # At least a quarter of an hour wide, so a young rollout's first minutes do not stretch
    # across the chart; a minute of margin so the first and last points are not on the edge.
    x_range = [
        (start - MARGIN).astimezone(tz),
        (max(end, start + MIN_SPAN) + MARGIN).astimezone(tz),
    ]
    figures = []
    for metric in metrics:
        name = metric["metric"]
        if name not in METRIC_VALUES:
            continue
        question, unit, value = METRIC_VALUES[name]
        stable_x = sorted(stable_minutes)
        stable_y = [value(stable_minutes[m]) for m in stable_x]
        candidate_x = sorted(candidate_minutes)
        candidate_y = [value(candidate_minutes[m]) for m in candidate_x]
        if all(v is None for v in stable_y + candidate_y):
            continue
        ratio = float(metric.get("tolerated_ratio", 1.5))
        figure = go.Figure()
        local_stable_x = [m.astimezone(tz) for m in stable_x]
        figure.add_scatter(
            name="stable",
            x=local_stable_x,
            y=stable_y,
            mode="lines",
            line={"color": STABLE_COLOUR, "width": 0},
            showlegend=False,
            hoverinfo="skip",
        )
        figure.add_scatter(
            name=f"tolerated (stable x {ratio:g})",
            x=local_stable_x,
            y=[None if v is None else v * ratio for v in stable_y],
            mode="lines",
            line={"color": STABLE_COLOUR, "width": 1, "dash": "dot"},
            fill="tonexty",
            fillcolor=BAND_COLOUR,
        )
        figure.add_scatter(
            name="stable",
            x=local_stable_x,
            y=stable_y,
            mode="lines+markers",
            line={"color": STABLE_COLOUR},
            marker={"size": 4},
        )
        figure.add_scatter(
            name="candidate",
            x=[m.astimezone(tz) for m in candidate_x],
            y=candidate_y,
            mode="lines+markers",
            line={"color": CANDIDATE_COLOUR},
            marker={"size": 5, "symbol": "diamond"},
        )
        title = question + (" · dry run" if metric.get("dry_run") else "")
        figure.update_layout(
            title={"text": title, "font": {"size": 13}},
            xaxis={"range": x_range, "gridcolor": "#f1f5f9"},
            yaxis_title=unit,
            **_LAYOUT,
        )
        label = (
            f"{METRIC_LABELS.get(name, name)} of the candidate against stable per minute, "
            f"with the tolerated band up to stable x {ratio:g}"
        )
        figures.append((name, label, figure))
    return figures


def _minutes(series: list[Series]) -> dict[datetime, Stats]:
    merged: dict[datetime, Stats] = {}
    for one in series:
        for point in one.points:
            if point.bucket_start in merged:
                _add(merged[point.bucket_start], point.stats)
            else:
                merged[point.bucket_start] = point.stats
    return merged
