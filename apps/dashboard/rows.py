"""The Overview's table row, drawn in Python. Why not a template: the page has one row per
agent and environment (150 for 50 agents) and refreshes every 15 s; the template engine
spent ~0.35 ms a row resolving its ~55 variables, as much as every query of the page
together. ``format_html`` escapes every value as a template would; the pieces already HTML
(sparklines, the convergence badge) are ``SafeString``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from django.urls import get_script_prefix, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

if TYPE_CHECKING:  # overview.py draws its rows with this module
    from .overview import Row


@functools.lru_cache(maxsize=32)
def _url_pattern(name: str, prefix: str) -> str:
    """``name`` reversed once (per script prefix) with two marker ids, for ``_url``."""
    return reverse(name, args=[2_000_000_011, 2_000_000_013])


def _url(name: str, first: int, second: int) -> str:
    """``reverse(name, args=[first, second])`` for a route of two integer ids, one string
    replacement per row instead of a resolver walk (150 rows a refresh)."""
    pattern = _url_pattern(name, get_script_prefix())
    return pattern.replace("2000000011", str(first), 1).replace("2000000013", str(second), 1)


VERDICT_TONE = {"rollback": "bad", "advance": "ok", "complete": "ok"}


def _rowheader(row: Row) -> SafeString:
    agent, environment = row.agent, row.environment
    return format_html(
        '<th scope="row"><a href="{}" aria-label="Incident panel of {} in {}">{} '
        '<span class="muted">in</span> {}</a>{}</th>',
        _url("dashboard:incident", agent.pk, environment.pk),
        agent.name,
        environment.name,
        agent.name,
        environment.name,
        mark_safe(' <span class="badge warn">prod</span>') if environment.is_production else "",
    )


def _stable(row: Row) -> SafeString:
    if row.stable is None:
        return mark_safe('<td><span class="muted">not deployed</span></td>')
    return format_html(
        "<td><strong>v{}</strong>{}</td>",
        row.stable.version.number,
        mark_safe(' <span class="badge bad">rolled back</span>')
        if row.stable.kind == "rollback"
        else "",
    )


def _candidate(row: Row) -> SafeString:
    summary = row.rollout
    if summary is None:
        return mark_safe('<td><span class="muted">—</span></td>')
    rollout = summary.rollout
    if summary.verdict and summary.latest is not None:
        verdict = format_html(
            ' <span class="badge {}" title="latest analysis: {}">{}</span>',
            VERDICT_TONE.get(summary.verdict, "warn"),
            summary.latest.reason[:200],
            summary.verdict,
        )
    else:
        verdict = mark_safe(' <span class="badge neutral">not analysed yet</span>')
    return format_html(
        '<td><a href="{}">v{}</a> <small>{}</small>{}</td>',
        reverse("rollouts:rollout_detail", args=[rollout.pk]),
        rollout.candidate.number,
        summary.step_label,
        verdict,
    )


def _health(row: Row) -> SafeString:
    if row.health is None:
        return mark_safe('<td colspan="4" class="muted">no telemetry</td>')
    return format_html_join(
        "",
        '<td class="metric"><span class="metric-value">{}</span>{}</td>',
        ((text, svg) for _name, text, svg in row.health.cells),
    )


def _once(
    memo: dict[tuple[object, ...], str], key: tuple[object, ...], make: Callable[[], str]
) -> str:
    """``make()`` once per ``key`` for the rows of one page (most rows share a budget and
    the engaged kill switches)."""
    if key not in memo:
        memo[key] = make()
    return memo[key]


def _budget(row: Row, memo: dict[tuple[object, ...], str]) -> SafeString:
    burn = row.burn
    if burn is None:
        return mark_safe('<td><span class="muted">no budget</span></td>')
    tone = "bad" if burn.exhausted else "warn" if burn.ahead_of_time else "ok"
    used, gone = f"{burn.percent:.0f}", f"{burn.elapsed_percent:.0f}"
    return format_html(
        '<td><a href="{}" class="badge {}" title="{}: {}% of its {} limit used, {}% of the {} '
        'gone">{}% used</a><small class="muted cell-note">{}% of {} gone</small></td>',
        _once(
            memo,
            ("budget", burn.budget.pk),
            lambda: reverse("budgets:detail", args=[burn.budget.pk]),
        ),
        tone,
        burn.budget.name,
        used,
        burn.metric,
        gone,
        burn.budget.window,
        used,
        gone,
        burn.budget.window,
    )


def _approvals(row: Row, *, inbox_url: str, read_at: datetime) -> SafeString:
    pending = row.pending
    if pending is None:
        return mark_safe('<td><span class="muted">none waiting</span></td>')
    return format_html(
        '<td><a href="{}?agent={}&amp;environment={}" class="badge warn" '
        'data-testid="pending-approvals">{} waiting</a>'
        '<small class="muted cell-note">oldest {}</small></td>',
        inbox_url,
        row.agent.slug,
        row.environment.slug,
        pending.count,
        timesince(pending.oldest_at, read_at),
    )


def _kill_switches(
    row: Row, *, kill_switches_url: str, memo: dict[tuple[object, ...], str]
) -> SafeString:
    if not row.kill_switches:
        return mark_safe('<td><span class="badge ok">none</span></td>')
    switches = row.kill_switches
    return format_html(
        '<td><a href="{}" class="badge bad" title="{}">{} engaged</a></td>',
        kill_switches_url,
        _once(
            memo,
            ("switches", *(s.pk for s in switches)),
            lambda: "; ".join(str(s) for s in switches),
        ),
        len(switches),
    )


def row_html(
    row: Row,
    *,
    show_health: bool,
    inbox_url: str,
    kill_switches_url: str,
    read_at: datetime,
    memo: dict[tuple[object, ...], str],
) -> SafeString:
    """The ``<tr>`` of ``row``: the agent in its environment (a link to the incident panel),
    stable, candidate with its step and verdict, four health cells (when ``show_health``),
    budget, waiting approvals (a link to the inbox on that agent and environment), kill
    switches and the environment's convergence badge. ``memo``: one dict for the rows of a
    page (what they share is worked out once)."""
    return format_html(
        '<tr id="{}" data-agent="{}" data-environment="{}">{}{}{}{}{}{}{}<td>{}</td></tr>',
        row.dom_id,
        row.agent.slug,
        row.environment.slug,
        _rowheader(row),
        _stable(row),
        _candidate(row),
        _health(row) if show_health else "",
        _budget(row, memo),
        _approvals(row, inbox_url=inbox_url, read_at=read_at),
        _kill_switches(row, kill_switches_url=kill_switches_url, memo=memo),
        row.convergence,
    )
