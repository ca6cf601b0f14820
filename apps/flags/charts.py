"""plotly figures for the flag pages, built in Python and rendered with the locally served
plotly.js (``static/vendor/plotly/plotly.min.js``)."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

import plotly.graph_objects as go

from .selectors import UsageRow

YES_COLOUR = "#15803d"  # green: the flag was on for that evaluation
NO_COLOUR = "#94a3b8"  # grey: it was off
VARIANT_COLOURS = [
    "#2563eb",
    "#d97706",
    "#7c3aed",
    "#0891b2",
    "#be123c",
    "#4d7c0f",
    "#a16207",
    "#475569",
]
# On a date axis plotly measures bars in ms: each bar fills 50 minutes of its hour, from :05.
HOUR_BAR_MS = 3_000_000
HOUR_BAR_OFFSET_MS = 300_000
_LAYOUT = {
    "height": 300,
    "margin": {"l": 50, "r": 20, "t": 50, "b": 40},
    "barmode": "stack",
    "legend": {"orientation": "h", "y": -0.2},
    "plot_bgcolor": "#ffffff",
    "yaxis": {"rangemode": "tozero", "gridcolor": "#e2e8f0"},
}


def _time_axis(now: datetime, hours: int, tz: tzinfo) -> dict[str, object]:
    """The last ``hours`` hours, left to right, in the tenant's time zone."""
    end = now.astimezone(tz).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return {"range": [end - timedelta(hours=hours), end], "gridcolor": "#f1f5f9"}


def usage_figure(
    rows: list[UsageRow], *, tz: tzinfo, flag_name: str, now: datetime, hours: int = 48
) -> go.Figure:
    """Stacked bars per hour: evaluations where the flag was on, and where it was off."""
    x = [r.hour.astimezone(tz) for r in rows]
    figure = go.Figure(
        [
            go.Bar(
                name="on (yes)",
                x=x,
                y=[r.yes for r in rows],
                marker_color=YES_COLOUR,
                width=HOUR_BAR_MS,
                offset=HOUR_BAR_OFFSET_MS,
            ),
            go.Bar(
                name="off (no)",
                x=x,
                y=[r.no for r in rows],
                marker_color=NO_COLOUR,
                width=HOUR_BAR_MS,
                offset=HOUR_BAR_OFFSET_MS,
            ),
        ]
    )
    figure.update_layout(
        title=f"How often did SDKs find {flag_name} on? (evaluations per hour, {tz})",
        xaxis=_time_axis(now, hours, tz),
        yaxis_title="evaluations",
        **_LAYOUT,
    )
    return figure


def variants_figure(
    rows: list[tuple[datetime, str, int]],
    *,
    tz: tzinfo,
    flag_name: str,
    now: datetime,
    hours: int = 48,
) -> go.Figure | None:
    """Stacked bars per hour by variant served; None when no variant was reported."""
    if not rows:
        return None
    names = sorted({variant for _, variant, _ in rows})
    figure = go.Figure()
    for i, name in enumerate(names):
        points = [(hour.astimezone(tz), count) for hour, variant, count in rows if variant == name]
        figure.add_bar(
            name=name,
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            width=HOUR_BAR_MS,
            offset=HOUR_BAR_OFFSET_MS,
            marker_color=NO_COLOUR
            if name == "disabled"
            else VARIANT_COLOURS[i % len(VARIANT_COLOURS)],
        )
    figure.update_layout(
        title=f"Which variants of {flag_name} did SDKs serve? (per hour, {tz})",
        xaxis=_time_axis(now, hours, tz),
        yaxis_title="evaluations",
        **_LAYOUT,
    )
    return figure
