"""plotly figures of the budget page, built in Python and drawn by the locally served
plotly.js through ``static/js/app.js`` (``apps.core.charts.figure_html``): the burn-down of
the current window (cumulative consumption of the tightest limit's metric, the limit, the
linear forecast to the window's end) and the spend by agent and by model.

Consumption is blue, the limit red, the forecast dashed amber; time runs left to right in the
tenant's zone (UI.md)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

import plotly.graph_objects as go

from apps.telemetry.consumption import Consumption

from .display import METRIC_WORDS

SPENT_COLOUR = "#2563eb"
LIMIT_COLOUR = "#dc2626"
FORECAST_COLOUR = "#d97706"
_LAYOUT: dict[str, Any] = {
    "height": 300,
    "margin": {"l": 64, "r": 16, "t": 46, "b": 40},
    "legend": {"orientation": "h", "y": -0.22},
    "plot_bgcolor": "#ffffff",
    "yaxis": {"rangemode": "tozero", "gridcolor": "#e2e8f0"},
}


def _value(consumption: Consumption, metric: str) -> float:
    return float(getattr(consumption, metric))


def _unit(metric: str) -> str:
    return "USD" if metric == "cost_usd" else METRIC_WORDS.get(metric, metric)


def burn_down(
    *,
    metric: str,
    limit: Decimal | int | None,
    points: Sequence[tuple[datetime, Consumption]],
    window_start: datetime,
    resets_at: datetime,
    now: datetime,
    exhausts_at: datetime | None,
    zone: tzinfo,
    whose: str = "",
) -> go.Figure:
    """Cumulative ``metric`` per minute since ``window_start`` (``points``: per-minute
    consumption, oldest first), the ``limit`` as a line, and the straight line from now to
    the window's end at the rate so far, with the projected exhaustion time marked.
    ``whose``: for per-subject budgets, the subject drawn ("agent support-bot")."""
    unit = _unit(metric)
    xs: list[datetime] = [window_start.astimezone(zone)]
    ys: list[float] = [0.0]
    total = 0.0
    for minute, consumption in points:
        total += _value(consumption, metric)
        xs.append(minute.astimezone(zone))
        ys.append(total)
    figure = go.Figure()
    figure.add_scatter(
        name=f"consumed{f' ({whose})' if whose else ''}",
        x=xs,
        y=ys,
        mode="lines",
        line={"color": SPENT_COLOUR, "shape": "hv", "width": 2},
    )
    elapsed = max((now - window_start).total_seconds(), 1.0)
    length = (resets_at - window_start).total_seconds()
    projected = total * length / elapsed
    figure.add_scatter(
        name="forecast at this rate",
        x=[now.astimezone(zone), resets_at.astimezone(zone)],
        y=[total, projected],
        mode="lines",
        line={"color": FORECAST_COLOUR, "dash": "dash", "width": 2},
    )
    if limit is not None:
        figure.add_scatter(
            name=f"limit {float(limit):g} {unit}",
            x=[window_start.astimezone(zone), resets_at.astimezone(zone)],
            y=[float(limit), float(limit)],
            mode="lines",
            line={"color": LIMIT_COLOUR, "width": 2},
        )
    if exhausts_at is not None and limit is not None:
        figure.add_scatter(
            name=f"runs out at {exhausts_at.astimezone(zone):%H:%M}",
            x=[exhausts_at.astimezone(zone)],
            y=[float(limit)],
            mode="markers",
            marker={"color": LIMIT_COLOUR, "size": 11, "symbol": "x"},
        )
    figure.update_layout(
        title={
            "text": f"Will it last the window? (cumulative {METRIC_WORDS.get(metric, metric)})",
            "font": {"size": 14},
        },
        xaxis={
            "range": [window_start.astimezone(zone), resets_at.astimezone(zone)],
            "gridcolor": "#f1f5f9",
        },
        yaxis_title=unit,
        **_LAYOUT,
    )
    return figure


def spend_bars(
    *, title: str, rows: Sequence[tuple[str, Consumption]], metric: str = "cost_usd"
) -> go.Figure:
    """A horizontal bar per row (label, consumption) of ``metric``, the biggest on top."""
    labels = [label or "(unnamed)" for label, _ in rows][::-1]
    values = [_value(consumption, metric) for _, consumption in rows][::-1]
    figure = go.Figure()
    figure.add_bar(
        x=values,
        y=labels,
        orientation="h",
        marker={"color": SPENT_COLOUR},
        name=_unit(metric),
    )
    figure.update_layout(
        title={"text": title, "font": {"size": 14}},
        xaxis={"title": _unit(metric), "rangemode": "tozero", "gridcolor": "#e2e8f0"},
        height=max(180, 60 + 28 * len(rows)),
        margin={"l": 140, "r": 16, "t": 46, "b": 40},
        plot_bgcolor="#ffffff",
        showlegend=False,
    )
    return figure
