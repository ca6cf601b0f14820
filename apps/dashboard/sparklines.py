"""Sparklines: a tiny inline SVG line per metric, drawn on the server (a plotly figure per
cell would ship a chart library's worth of JSON for 600 cells). Each carries its values as
text (``<title>`` and ``aria-label``), so a screen reader or a tooltip reads the numbers the
line stands for; colour is never the only signal."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD = 80, 20, 2


def sparkline(values: Sequence[float | None], *, label: str, summary: str) -> SafeString:
    """An SVG polyline of ``values`` (oldest first; None: no data, a gap), scaled from 0 to
    the largest value. ``label`` names the metric ("error rate of support-bot in
    production, 5-minute steps over the last hour"); ``summary`` lists the values as text.
    Without any value, a flat grey baseline."""
    known = [v for v in values if v is not None]
    top = max(known, default=0.0) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        x = PAD + i * step
        y = HEIGHT - PAD - (value / top) * (HEIGHT - 2 * PAD)
        runs[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(
        f'<polyline points="{" ".join(run)}" fill="none" stroke="currentColor" '
        'stroke-width="1.5" stroke-linejoin="round"/>'
        if len(run) > 1
        else f'<circle cx="{run[0].split(",")[0]}" cy="{run[0].split(",")[1]}" r="1.5" '
        'fill="currentColor"/>'
        for run in runs
        if run
    )
    if not known:
        lines = (
            f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
            'stroke="#94a3b8" stroke-width="1" stroke-dasharray="2 2"/>'
        )
    text = escape(f"{label}: {summary}")
    return mark_safe(  # noqa: S308 -- numbers we formatted, and escaped text
        f'<svg class="spark" role="img" aria-label="{text}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}"><title>{text}</title>{lines}</svg>'
    )
