"""plotly figures of the queue-health page, built in Python and drawn by the locally served
plotly.js through ``static/js/app.js`` (``apps.core.charts.figure_html``): small multiples
over the same hours — how many requests were waiting, how many arrived, and how many expired
undecided or were escalated.

Waiting is amber (UI.md: waiting / behind), arrivals blue, expiries red, escalations dark
amber hatched; time runs left to right in the tenant's zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

import plotly.graph_objects as go

WAITING_COLOUR = "#d97706"
OPENED_COLOUR = "#2563eb"
EXPIRED_COLOUR = "#dc2626"
ESCALATED_COLOUR = "#92400e"
_LAYOUT: dict[str, Any] = {
    "height": 260,
    "margin": {"l": 48, "r": 16, "t": 46, "b": 40},
    "legend": {"orientation": "h", "y": -0.25},
    "plot_bgcolor": "#ffffff",
    "xaxis": {"gridcolor": "#f1f5f9"},
    "yaxis": {"rangemode": "tozero", "gridcolor": "#e2e8f0", "tickformat": ",d"},
    "bargap": 0.15,
}


def _counts_axis(*series: Sequence[int]) -> dict[str, Any]:
    """A y axis of whole counts: ticks 0, 1, 2… when the counts are small (plotly would
    otherwise draw 0.5 steps, rounded to "0, 1, 1")."""
    top = max((max(values, default=0) for values in series), default=0)
    axis: dict[str, Any] = {**_LAYOUT["yaxis"], "range": [0, max(top, 1) * 1.1]}
    if top <= 6:
        axis["dtick"] = 1
    return axis


def _title(text: str) -> dict[str, Any]:
    return {"text": text, "font": {"size": 14}}


def _local(hours: Sequence[datetime], zone: tzinfo) -> list[datetime]:
    return [hour.astimezone(zone) for hour in hours]


def depth(*, hours: Sequence[datetime], waiting: Sequence[int], zone: tzinfo) -> go.Figure:
    """Requests waiting at the end of each hour (``hours``: bucket starts)."""
    figure = go.Figure()
    figure.add_scatter(
        name="waiting",
        x=_local(hours, zone),
        y=list(waiting),
        mode="lines+markers",
        line={"color": WAITING_COLOUR, "shape": "hv", "width": 2},
        marker={"size": 5},
    )
    figure.update_layout(
        title=_title("Is the queue keeping up? (requests waiting, at each hour's end)"),
        showlegend=False,
        **{**_LAYOUT, "yaxis": _counts_axis(waiting)},
    )
    return figure


def opened(*, hours: Sequence[datetime], counts: Sequence[int], zone: tzinfo) -> go.Figure:
    """Requests opened per hour."""
    figure = go.Figure()
    figure.add_bar(
        name="opened", x=_local(hours, zone), y=list(counts), marker={"color": OPENED_COLOUR}
    )
    figure.update_layout(
        title=_title("How much arrives? (requests opened per hour)"),
        showlegend=False,
        **{**_LAYOUT, "yaxis": _counts_axis(counts)},
    )
    return figure


def expired_escalated(
    *,
    hours: Sequence[datetime],
    expired: Sequence[int],
    escalated: Sequence[int],
    zone: tzinfo,
) -> go.Figure:
    """Requests that expired undecided (denied) and that were escalated, per hour."""
    x = _local(hours, zone)
    figure = go.Figure()
    figure.add_bar(name="expired (denied)", x=x, y=list(expired), marker={"color": EXPIRED_COLOUR})
    figure.add_bar(
        name="escalated",
        x=x,
        y=list(escalated),
        marker={"color": ESCALATED_COLOUR, "pattern": {"shape": "/", "fgcolor": "#fde68a"}},
    )
    figure.update_layout(
        title=_title("Does anything go undecided? (expired and escalated per hour)"),
        barmode="group",
        **{**_LAYOUT, "yaxis": _counts_axis(expired, escalated)},
    )
    return figure
