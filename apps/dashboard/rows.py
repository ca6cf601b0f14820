"""The Overview's table row, drawn in Python. Why not a template: the page has one row per
agent and environment (150 for 50 agents) and refreshes every 15 s; the template engine
spent ~0.35 ms a row resolving its ~55 variables, as much as every query of the page
together. ``format_html`` escapes every value as a template would; the pieces already HTML
(sparklines, the convergence badge) are ``SafeString``.

Drawing is split in two: ``row_face`` reads, from a row, every value its HTML shows (a tuple
of strings and numbers), and ``draw_row`` turns a face into HTML, a pure function of it, so
it is remembered per process (``DRAWN_ROWS``). Between two refreshes of an Overview most
rows show the same values (the health figures change by the minute), so a poll draws only
the rows that changed; a face holds everything drawn, so a remembered row cannot be stale."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from django.urls import get_script_prefix, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

if TYPE_CHECKING:  # overview.py draws its rows with this module
    from .overview import Row

VERDICT_TONE = {"rollback": "bad", "advance": "ok", "complete": "ok"}
# Rows drawn and remembered per process: ~6 KB each with their sparklines (the faces hold the
# same strings), so ~12 MB at most; 150 rows per tenant's Overview.
DRAWN_ROWS = 1024


class Candidate(NamedTuple):
    """What the candidate cell shows: the rollout (its page), the candidate's number, the
    step, and the latest verdict with its reason ("" before the first analysis)."""

    rollout_id: int
    number: int
    step_label: str
    verdict: str
    reason: str


class Budget(NamedTuple):
    """What the budget cell shows: the budget (its page), its name, metric and window, the
    share used and the share of the window gone (whole percent, as text), and the tone."""

    budget_id: int
    name: str
    metric: str
    window: str
    used: str
    gone: str
    tone: str


class Pending(NamedTuple):
    """Waiting approvals of the row: how many, and the oldest one's age in words."""

    waiting: int
    oldest: str


class RowFace(NamedTuple):
    """Every value one Overview row shows, and nothing else: ``draw_row``'s whole input (the
    URLs are reversed under ``script_prefix``)."""

    script_prefix: str
    agent_id: int
    agent_slug: str
    agent_name: str
    environment_id: int
    environment_slug: str
    environment_name: str
    is_production: bool
    stable: tuple[int, bool] | None  # version number, whether it is a rollback
    candidate: Candidate | None
    health: tuple[tuple[str, str], ...] | None  # (text, svg) per metric; None: not shown
    health_shown: bool
    budget: Budget | None
    pending: Pending | None
    inbox_url: str
    kill_switches: tuple[str, int] | None  # their names joined, how many
    kill_switches_url: str
    convergence: str  # HTML


def row_face(
    row: Row, *, show_health: bool, inbox_url: str, kill_switches_url: str, read_at: datetime
) -> RowFace:
    """The values ``row`` shows (see ``RowFace``); the oldest approval's age is worded as of
    ``read_at``."""
    agent, environment = row.agent, row.environment
    stable = row.stable
    summary = row.rollout
    candidate = None
    if summary is not None:
        latest = summary.latest
        candidate = Candidate(
            summary.rollout.pk,
            summary.rollout.candidate.number,
            summary.step_label,
            summary.verdict if latest is not None else "",
            latest.reason[:200] if latest is not None and summary.verdict else "",
        )
    burn = row.burn
    budget = None
    if burn is not None:
        budget = Budget(
            burn.budget.pk,
            burn.budget.name,
            burn.metric,
            burn.budget.window,
            f"{burn.percent:.0f}",
            f"{burn.elapsed_percent:.0f}",
            "bad" if burn.exhausted else "warn" if burn.ahead_of_time else "ok",
        )
    pending = row.pending
    switches = row.kill_switches
    return RowFace(
        script_prefix=get_script_prefix(),
        agent_id=agent.pk,
        agent_slug=agent.slug,
        agent_name=agent.name,
        environment_id=environment.pk,
        environment_slug=environment.slug,
        environment_name=environment.name,
        is_production=environment.is_production,
        stable=(stable.version_number, stable.kind == "rollback") if stable is not None else None,
        candidate=candidate,
        health=tuple((text, svg) for _name, text, svg in row.health.cells)
        if show_health and row.health is not None
        else None,
        health_shown=show_health,
        budget=budget,
        pending=Pending(pending.count, timesince(pending.oldest_at, read_at))
        if pending is not None
        else None,
        inbox_url=inbox_url,
        kill_switches=("; ".join(switches), len(switches)) if switches else None,
        kill_switches_url=kill_switches_url,
        convergence=str(row.convergence),
    )


@functools.lru_cache(maxsize=32)
def _url_pattern(name: str, prefix: str) -> str:
    """``name`` reversed once (per script prefix) with two marker ids, for ``_url``."""
    return reverse(name, args=[2_000_000_011, 2_000_000_013])


def _url(name: str, first: int, second: int) -> str:
    """``reverse(name, args=[first, second])`` for a route of two integer ids, one string
    replacement per row instead of a resolver walk."""
    pattern = _url_pattern(name, get_script_prefix())
    return pattern.replace("2000000011", str(first), 1).replace("2000000013", str(second), 1)


def _rowheader(face: RowFace) -> SafeString:
    return format_html(
        '<th scope="row"><a href="{}" aria-label="Incident panel of {} in {}">{} '
        '<span class="muted">in</span> {}</a>{}</th>',
        _url("dashboard:incident", face.agent_id, face.environment_id),
        face.agent_name,
        face.environment_name,
        face.agent_name,
        face.environment_name,
        mark_safe(' <span class="badge warn">prod</span>') if face.is_production else "",
    )


def _stable(face: RowFace) -> SafeString:
    if face.stable is None:
        return mark_safe('<td><span class="muted">not deployed</span></td>')
    number, rolled_back = face.stable
    return format_html(
        "<td><strong>v{}</strong>{}</td>",
        number,
        mark_safe(' <span class="badge bad">rolled back</span>') if rolled_back else "",
    )


def _candidate(face: RowFace) -> SafeString:
    candidate = face.candidate
    if candidate is None:
        return mark_safe('<td><span class="muted">—</span></td>')
    if candidate.verdict:
        verdict = format_html(
            ' <span class="badge {}" title="latest analysis: {}">{}</span>',
            VERDICT_TONE.get(candidate.verdict, "warn"),
            candidate.reason,
            candidate.verdict,
        )
    else:
        verdict = mark_safe(' <span class="badge neutral">not analysed yet</span>')
    return format_html(
        '<td><a href="{}">v{}</a> <small>{}</small>{}</td>',
        reverse("rollouts:rollout_detail", args=[candidate.rollout_id]),
        candidate.number,
        candidate.step_label,
        verdict,
    )


def _health(face: RowFace) -> SafeString:
    if not face.health_shown:
        return mark_safe("")
    if face.health is None:
        return mark_safe('<td colspan="4" class="muted">no telemetry</td>')
    return format_html_join(
        "",
        '<td class="metric"><span class="metric-value">{}</span>{}</td>',
        ((text, mark_safe(svg)) for text, svg in face.health),  # noqa: S308 - sparklines.py escapes
    )


def _budget(face: RowFace) -> SafeString:
    budget = face.budget
    if budget is None:
        return mark_safe('<td><span class="muted">no budget</span></td>')
    return format_html(
        '<td><a href="{}" class="badge {}" title="{}: {}% of its {} limit used, {}% of the {} '
        'gone">{}% used</a><small class="muted cell-note">{}% of {} gone</small></td>',
        reverse("budgets:detail", args=[budget.budget_id]),
        budget.tone,
        budget.name,
        budget.used,
        budget.metric,
        budget.gone,
        budget.window,
        budget.used,
        budget.gone,
        budget.window,
    )


def _approvals(face: RowFace) -> SafeString:
    pending = face.pending
    if pending is None:
        return mark_safe('<td><span class="muted">none waiting</span></td>')
    return format_html(
        '<td><a href="{}?agent={}&amp;environment={}" class="badge warn" '
        'data-testid="pending-approvals">{} waiting</a>'
        '<small class="muted cell-note">oldest {}</small></td>',
        face.inbox_url,
        face.agent_slug,
        face.environment_slug,
        pending.waiting,
        pending.oldest,
    )


def _kill_switches(face: RowFace) -> SafeString:
    if face.kill_switches is None:
        return mark_safe('<td><span class="badge ok">none</span></td>')
    names, count = face.kill_switches
    return format_html(
        '<td><a href="{}" class="badge bad" title="{}">{} engaged</a></td>',
        face.kill_switches_url,
        names,
        count,
    )


@functools.lru_cache(maxsize=DRAWN_ROWS)
def draw_row(face: RowFace) -> SafeString:
    """The ``<tr>`` of a row showing ``face``: the agent in its environment (a link to the
    incident panel), stable, candidate with its step and verdict, four health cells (when
    shown), budget, waiting approvals (a link to the inbox on that agent and environment),
    kill switches and the environment's convergence badge. Remembered per face."""
    return format_html(
        '<tr id="row-{}-{}" data-agent="{}" data-environment="{}">{}{}{}{}{}{}{}<td>{}</td></tr>',
        face.agent_id,
        face.environment_id,
        face.agent_slug,
        face.environment_slug,
        _rowheader(face),
        _stable(face),
        _candidate(face),
        _health(face),
        _budget(face),
        _approvals(face),
        _kill_switches(face),
        mark_safe(face.convergence),  # noqa: S308 - a template drew it (overview_rows)
    )


def row_html(
    row: Row, *, show_health: bool, inbox_url: str, kill_switches_url: str, read_at: datetime
) -> SafeString:
    """The ``<tr>`` of ``row`` (see ``draw_row``), drawn only when a row showing the same
    values was not drawn before in this process."""
    return draw_row(
        row_face(
            row,
            show_health=show_health,
            inbox_url=inbox_url,
            kill_switches_url=kill_switches_url,
            read_at=read_at,
        )
    )
