"""plotly figures for the Telemetry page, built in Python from rollup series
(``explorer.chart_series``) and drawn by the locally served plotly.js
(``static/vendor/plotly/plotly.min.js``) through ``static/js/app.js``.

Small multiples, one question each: how much traffic, how many errors, how slow, how costly,
how many tokens — one line per (version, variant). Stable is always blue and candidate always
amber (docs/UI: the same colours everywhere); versions differ by dash.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

import plotly.graph_objects as go

from .explorer import ChartPoint, ChartSeries

VARIANT_COLOURS = {"stable": "#2563eb", "candidate": "#d97706", "shadow": "#7c3aed"}
OTHER_COLOUR = "#475569"
DASHES = ["solid", "dash", "dot", "dashdot", "longdash"]
_LAYOUT: dict[str, Any] = {
    "height": 260,
    "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
    "legend": {"orientation": "h", "y": -0.25},
    "plot_bgcolor": "#ffffff",
    "yaxis": {"rangemode": "tozero", "gridcolor": "#e2e8f0"},
    "hovermode": "x unified",
}

# (key, title's question, y-axis title, value of a point; None leaves a gap)
METRICS: list[tuple[str, str, str, Callable[[ChartPoint], float | None]]] = [
    ("requests", "How much traffic? (requests per minute)", "req/min", lambda p: p.request_rate),
    (
        "errors",
        "How often does it fail? (error rate, %)",
        "% errors",
        lambda p: None if p.stats.error_rate is None else 100 * p.stats.error_rate,
    ),
    ("latency", "How slow? (p95 latency, ms)", "ms", lambda p: p.stats.p95_ms),
    (
        "cost",
        "What does a request cost? (USD per request)",
        "USD",
        lambda p: None if p.stats.cost_per_request is None else float(p.stats.cost_per_request),
    ),
    ("tokens", "How many tokens? (in + out per minute)", "tokens/min", lambda p: p.tokens_rate),
]


def telemetry_figures(
    series: list[ChartSeries], *, tz: tzinfo, start: datetime, end: datetime
) -> list[tuple[str, go.Figure]]:
    """One figure per metric of METRICS, each with a line per series, titled by its question
    (which agent and environment is the page's heading and each chart's accessible name).
    Empty list without series."""
    if not series:
        return []
    digests = list(dict.fromkeys(s.version_digest for s in series))
    figures = []
    for key, question, unit, value in METRICS:
        figure = go.Figure()
        for s in series:
            figure.add_scatter(
                name=s.label,
                x=[p.bucket_start.astimezone(tz) for p in s.points],
                y=[value(p) for p in s.points],
                mode="lines+markers",
                connectgaps=False,
                line={
                    "color": VARIANT_COLOURS.get(s.variant, OTHER_COLOUR),
                    "dash": DASHES[digests.index(s.version_digest) % len(DASHES)],
                },
                marker={"size": 4},
            )
        figure.update_layout(
            title={"text": question, "font": {"size": 14}},
            xaxis={"range": [start.astimezone(tz), end.astimezone(tz)], "gridcolor": "#f1f5f9"},
            yaxis_title=unit,
            **_LAYOUT,
        )
        figures.append((key, figure))
    return figures
