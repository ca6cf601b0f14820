"""Chart markup shared by the apps' pages: a plotly figure as a ``<div>`` that
``static/js/app.js`` draws with the locally served plotly.js
(``static/vendor/plotly/plotly.min.js``). Each app builds its own figures."""

from __future__ import annotations

import json

import plotly.graph_objects as go
from django.utils.html import format_html
from django.utils.safestring import SafeString
from plotly.utils import PlotlyJSONEncoder


def figure_html(figure: go.Figure, *, label: str | None = None) -> SafeString:
    """A ``<div>`` carrying the figure as JSON in ``data-plotly-figure``; ``static/js/app.js``
    draws it with the page's plotly.min.js. No inline script: the CSP allows none.

    ``label``, when given, is the chart's accessible name (``role="img"`` with
    ``aria-label``); without it the figure's own title is all a reader gets."""
    plotly_json = figure.to_plotly_json()
    spec = {
        "data": plotly_json["data"],
        "layout": plotly_json["layout"],
        "config": {"displaylogo": False, "responsive": True},
    }
    payload = json.dumps(spec, cls=PlotlyJSONEncoder, separators=(",", ":"))
    if label is None:
        return format_html('<div class="plotly-graph-div" data-plotly-figure="{}"></div>', payload)
    return format_html(
        '<div class="plotly-graph-div" role="img" aria-label="{}" data-plotly-figure="{}"></div>',
        label,
        payload,
    )
