"""The Overview's table row, drawn in Python. Why not a template: the page has one row per
agent and environment (150 for 50 agents) and refreshes every 15 s; the template engine
spent ~0.35 ms a row resolving its ~55 variables, as much as every query of the page
together. Every text is escaped as a template would (``_e``, Django's ``escape`` without its
lazy-string wrapper); the pieces already HTML (sparklines, the convergence badge) are
``SafeString``.

Drawing is split in two: ``row_face`` reads, from a row, every value its HTML shows (a tuple
of strings and numbers), and ``draw_row`` turns a face into HTML, a pure function of it, so
it is remembered per process (``DRAWN_ROWS``). Between two refreshes of an Overview most
rows show the same values (the health figures change by the minute), so a poll draws only
the rows that changed; a face holds everything drawn, so a remembered row cannot be stale."""

from __future__ import annotations

import functools
import html
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from django.urls import get_script_prefix, reverse
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince

if TYPE_CHECKING:  # overview.py draws its rows with this module
    from .overview import Row

VERDICT_TONE = {"rollback": "bad", "advance": "ok", "complete": "ok"}
# Rows drawn and remembered per process: ~6 KB each with their sparklines (the faces hold the
# same strings), so ~12 MB at most; 150 rows per tenant's Overview.
DRAWN_ROWS = 1024


class CandidateCell(NamedTuple):
    """What the candidate cell shows: the rollout (its page), the candidate's number, the
    step, and the latest verdict with its reason ("" before the first analysis)."""

    rollout_id: int
    number: int
    step_label: str
    verdict: str
    reason: str


class BudgetCell(NamedTuple):
    """What the budget cell shows: the budget (its page), its name, metric and window, the
    share used and the share of the window gone (whole percent, as text), and the tone."""

    budget_id: int
    name: str
    metric: str
    window: str
    used: str
    gone: str
    tone: str


class PendingCell(NamedTuple):
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
    candidate: CandidateCell | None
    health: tuple[tuple[str, SafeString], ...] | None  # (text, svg) per metric; None: none
    health_shown: bool
    budget: BudgetCell | None
    pending: PendingCell | None
    inbox_url: str
    kill_switches: tuple[str, int] | None  # their names joined, how many
    kill_switches_url: str
    convergence: SafeString


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
        candidate = CandidateCell(
            summary.rollout.pk,
            summary.rollout.candidate.number,
            summary.step_label,
            summary.verdict if latest is not None else "",
            latest.reason[:200] if latest is not None and summary.verdict else "",
        )
    burn = row.burn
    budget = None
    if burn is not None:
        budget = BudgetCell(
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
        health=tuple((text, conditional_escape(svg)) for _name, text, svg in row.health.cells)
        if show_health and row.health is not None
        else None,
        health_shown=show_health,
        budget=budget,
        pending=PendingCell(pending.count, timesince(pending.oldest_at, read_at))
        if pending is not None
        else None,
        inbox_url=inbox_url,
        kill_switches=("; ".join(switches), len(switches)) if switches else None,
        kill_switches_url=kill_switches_url,
        convergence=conditional_escape(row.convergence),
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


def _e(value: object) -> str:
    """``value`` as HTML text: Django's ``escape`` (``html.escape`` with quotes, since Django
    3.0) without its lazy-string wrapper, which cost more than the escaping on 150 rows."""
    return html.escape(str(value))


def _rowheader(face: RowFace) -> str:
    agent, environment = _e(face.agent_name), _e(face.environment_name)
    prod = ' <span class="badge warn">prod</span>' if face.is_production else ""
    url = _url("dashboard:incident", face.agent_id, face.environment_id)
    return (
        f'<th scope="row"><a href="{_e(url)}"'
        f' aria-label="Incident panel of {agent} in {environment}">{agent} '
        f'<span class="muted">in</span> {environment}</a>{prod}</th>'
    )


def _stable(face: RowFace) -> str:
    if face.stable is None:
        return '<td><span class="muted">not deployed</span></td>'
    number, rolled_back = face.stable
    badge = ' <span class="badge bad">rolled back</span>' if rolled_back else ""
    return f"<td><strong>v{_e(number)}</strong>{badge}</td>"


def _candidate(face: RowFace) -> str:
    candidate = face.candidate
    if candidate is None:
        return '<td><span class="muted">—</span></td>'
    if candidate.verdict:
        tone = VERDICT_TONE.get(candidate.verdict, "warn")
        verdict = (
            f' <span class="badge {tone}" title="latest analysis: {_e(candidate.reason)}">'
            f"{_e(candidate.verdict)}</span>"
        )
    else:
        verdict = ' <span class="badge neutral">not analysed yet</span>'
    url = reverse("rollouts:rollout_detail", args=[candidate.rollout_id])
    return (
        f'<td><a href="{_e(url)}">v{_e(candidate.number)}</a> '
        f"<small>{_e(candidate.step_label)}</small>{verdict}</td>"
    )


def _health(face: RowFace) -> str:
    if not face.health_shown:
        return ""
    if face.health is None:
        return '<td colspan="4" class="muted">no telemetry</td>'
    # the sparklines are HTML already (``row_face`` made sure)
    return "".join(
        f'<td class="metric"><span class="metric-value">{_e(text)}</span>{svg}</td>'
        for text, svg in face.health
    )


def _budget(face: RowFace) -> str:
    budget = face.budget
    if budget is None:
        return '<td><span class="muted">no budget</span></td>'
    url = reverse("budgets:detail", args=[budget.budget_id])
    name, metric, window = _e(budget.name), _e(budget.metric), _e(budget.window)
    used, gone = _e(budget.used), _e(budget.gone)
    return (
        f'<td><a href="{_e(url)}" class="badge {_e(budget.tone)}" title="{name}: {used}% of its '
        f'{metric} limit used, {gone}% of the {window} gone">{used}% used</a>'
        f'<small class="muted cell-note">{gone}% of {window} gone</small></td>'
    )


def _approvals(face: RowFace) -> str:
    pending = face.pending
    if pending is None:
        return '<td><span class="muted">none waiting</span></td>'
    return (
        f'<td><a href="{_e(face.inbox_url)}?agent={_e(face.agent_slug)}&amp;environment='
        f'{_e(face.environment_slug)}" class="badge warn" data-testid="pending-approvals">'
        f"{_e(pending.waiting)} waiting</a>"
        f'<small class="muted cell-note">oldest {_e(pending.oldest)}</small></td>'
    )


def _kill_switches(face: RowFace) -> str:
    if face.kill_switches is None:
        return '<td><span class="badge ok">none</span></td>'
    names, count = face.kill_switches
    return (
        f'<td><a href="{_e(face.kill_switches_url)}" class="badge bad" title="{_e(names)}">'
        f"{_e(count)} engaged</a></td>"
    )


@functools.lru_cache(maxsize=DRAWN_ROWS)
def draw_row(face: RowFace) -> SafeString:
    """The ``<tr>`` of a row showing ``face``: the agent in its environment (a link to the
    incident panel), stable, candidate with its step and verdict, four health cells (when
    shown), budget, waiting approvals (a link to the inbox on that agent and environment),
    kill switches and the environment's convergence badge. Every text of the face is
    escaped here; its sparklines and badge are HTML (``row_face`` escapes any that is not
    marked safe). Remembered per face."""
    return mark_safe(  # noqa: S308 - every value above is escaped by _e or is HTML already
        f'<tr id="row-{_e(face.agent_id)}-{_e(face.environment_id)}" '
        f'data-agent="{_e(face.agent_slug)}" data-environment="{_e(face.environment_slug)}">'
        f"{_rowheader(face)}{_stable(face)}{_candidate(face)}{_health(face)}{_budget(face)}"
        f"{_approvals(face)}{_kill_switches(face)}<td>{face.convergence}</td></tr>"
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
