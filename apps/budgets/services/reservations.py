"""Strict budgets' reservations: a runtime reserves an estimate before an expensive step and
settles the actual after (docs/budgets.md). The hot path of budgets, called once per step by
every runtime, so it is a few plain SQL statements (docs/decisions/0025-budget-reservations.md):

1. one read: the agent and the strict budgets in its scope, with their limits and the tenant's
   time zone;
2. the counters of the current windows created if missing (``ON CONFLICT DO NOTHING``, outside
   the transaction: it takes no lock on an existing row);
3. in one transaction: the reservation rows inserted (``ON CONFLICT DO NOTHING``: a repeat of
   the same id holds nothing twice), then per budget one conditional ``UPDATE … FROM budget
   WHERE consumed + reserved + estimate <= limit``. A row lock is held only from that update
   to the commit; the limit is read from the budget row in the same statement, so a limit
   changed a moment ago is the one applied.

So consumed + reserved of a strict budget never passes its limit, whatever runs at the same
time. Works the same on SQLite (the embedded default), which serialises writers."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.tenancy.models import Agent, Tenant

from ..models import HELD, METRICS, Budget, BudgetUsage, Reservation, ReservationStatus, Scope
from ..windows import window_bounds
from ._common import MAX_COST, MAX_COUNT, _number

Amounts = dict[str, Decimal | int]


@dataclass
class ReserveAnswer:
    """The answer to a reservation (docs/budgets.md): granted, or refused by the first strict
    budget whose limit it would pass (``refused_by``: id, name, metric, remaining, resets_at).
    ``budgets``: per strict budget in scope, what remains after this reservation."""

    reservation_id: str
    granted: bool
    expires_at: datetime | None = None
    refused_by: dict[str, Any] | None = None
    budgets: list[dict[str, Any]] = field(default_factory=list)
    # refused by a counter whose consumption alone leaves no room for the estimate:
    # (budget id, window start, subject, metric, estimate); not part of the answer
    no_room: tuple[int, datetime, str, str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/runtime/v1/budgets/reserve``."""
        body: dict[str, Any] = {
            "reservation_id": self.reservation_id,
            "granted": self.granted,
            "budgets": self.budgets,
        }
        if self.granted:
            body["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        else:
            body["refused_by"] = self.refused_by
        return body


@dataclass(frozen=True)
class SettleAnswer:
    """The answer to a settle: the reservation's status now, and whether this was a repeat."""

    reservation_id: str
    status: str
    duplicate: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "reservation_id": self.reservation_id,
            "status": self.status,
            "duplicate": self.duplicate,
        }


class UnknownReservation(LookupError):
    """No reservation of this tenant has this id."""


# A refused step at most this share of the limit, that does not fit even alone, exhausts a
# strict budget for its window (see ``budget_reserve``).
NO_ROOM_STEP_SHARE = Decimal("0.1")


class _CounterGone(Exception):
    """A counter the hot path believed in does not exist (any more)."""


class UnknownAgent(LookupError):
    """No active agent of this slug in the token's scope."""


def amounts_parse(raw: Any, where: str) -> Amounts:
    """``{metric: amount}`` for the four metrics (absent ones 0) from a reserve or settle body's
    ``estimate`` / ``actual``. Raises ``ValidationError`` keyed ``<where>`` or
    ``<where>.<metric>``: not an object, an unknown metric, not a number, negative, too big."""
    errors: dict[str, list[str]] = {}
    amounts: Amounts = {}
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValidationError({where: ["An object of cost_usd, tokens, requests, tool_calls."]})
    for key in raw:
        if key not in METRICS:
            errors[f"{where}.{key}"] = ["Unknown metric: cost_usd, tokens, requests or tool_calls."]
    for metric in METRICS:
        try:
            value = _number(raw.get(metric), decimal=metric == "cost_usd")
        except (ValueError, ArithmeticError) as exc:
            errors[f"{where}.{metric}"] = [f"Enter a number ({exc})."]
            continue
        if value is None:
            value = Decimal(0) if metric == "cost_usd" else 0
        if value < 0 or value >= (MAX_COST if metric == "cost_usd" else MAX_COUNT):
            errors[f"{where}.{metric}"] = ["Must be 0 or more (and below 10^9)."]
            continue
        amounts[metric] = value
    if errors:
        raise ValidationError(errors)
    return amounts


def reservation_ttl() -> timedelta:
    """How long a reservation, or a settled amount waiting for its record, is held."""
    return timedelta(seconds=float(settings.BUDGET_RESERVATION_TTL_S))


@dataclass(frozen=True)
class _Target:
    """One strict budget a reservation holds on: its counter and limits."""

    budget_id: int
    name: str
    window_start: datetime
    resets_at: datetime
    subject: str
    limits: dict[str, Decimal | int | None]


# What the hot path remembers between reservations, per process: the strict budgets of a
# (tenant, environment, agent) scope (one query saved; cleared by ``scope_cache_clear`` on any
# revision bump, and at most SCOPE_CACHE_TTL_S old, for a tenant's time zone changed
# meanwhile: the limits themselves are always read live by the conditional update), window
# bounds per (window, zone) until they end, and counters known to exist (an insert saved).
SCOPE_CACHE_TTL_S = 5.0
_SCOPE_CACHE_SIZE = 10_000
_scope_cache: dict[tuple[Any, ...], tuple[float, list[Any]]] = {}
_windows: dict[tuple[str, str], tuple[datetime, datetime]] = {}
_known_counters: set[tuple[int, datetime, str]] = set()


def _commit_mode_params() -> list[Any]:
    """PostgreSQL: a reservation's transaction commits without waiting for its WAL flush
    unless ``BUDGET_SYNCHRONOUS_COMMIT`` (set for that transaction only, in the statement that
    starts it): the hot counter's row lock is released a flush earlier (decision 0025)."""
    if connection.vendor != "postgresql":
        return []
    return ["on" if settings.BUDGET_SYNCHRONOUS_COMMIT else "off"]


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _targets(
    *,
    tenant_id: int,
    environment_id: int,
    agent: str | int,
    token_agent_id: int | None,
    end_user_hash: str,
    now: datetime,
) -> tuple[int, list[_Target]]:
    """The agent's id (``agent``: its slug or id) and the strict budgets a request of it (by
    ``end_user_hash``) in ``environment_id`` falls in, in budget id order: one query. Raises
    ``UnknownAgent``."""
    budget, tenant, agent_table = (
        _q(Budget._meta.db_table),
        _q(Tenant._meta.db_table),
        _q(Agent._meta.db_table),
    )
    by = "a.slug = %s" if isinstance(agent, str) else "a.id = %s"
    sql = (
        f"SELECT a.id, t.time_zone, b.id, b.name, b.scope, b.{_q('window')}, "  # noqa: S608 - table and column names are ours
        "b.limit_cost_usd, b.limit_tokens, b.limit_requests, b.limit_tool_calls "
        f"FROM {agent_table} a JOIN {tenant} t ON t.id = a.tenant_id "
        f"LEFT JOIN {budget} b ON b.tenant_id = a.tenant_id AND b.strict "
        "AND (b.environment_id IS NULL OR b.environment_id = %s) "
        "AND (b.scope IN ('tenant', 'tenant_agent') OR b.agent_id = a.id) "
        f"WHERE a.tenant_id = %s AND {by} AND a.archived_at IS NULL"
        + (" AND a.id = %s" if token_agent_id is not None else "")
        + " ORDER BY b.id"
    )
    params: list[Any] = [environment_id, tenant_id, agent]
    if token_agent_id is not None:
        params.append(token_agent_id)
    cache_key = (tenant_id, environment_id, agent, token_agent_id)
    clock = time.monotonic()
    cached = _scope_cache.get(cache_key)
    if cached is not None and cached[0] > clock:
        rows = cached[1]
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        if len(_scope_cache) >= _SCOPE_CACHE_SIZE:
            _scope_cache.clear()
        _scope_cache[cache_key] = (clock + SCOPE_CACHE_TTL_S, rows)
    if not rows:
        raise UnknownAgent(agent)
    agent_id = rows[0][0]
    targets = []
    for _, zone, budget_id, name, scope, window, cost, tokens, requests, tools in rows:
        if budget_id is None:
            continue
        if scope == Scope.END_USER:
            if not end_user_hash:
                continue  # no end user: an end-user budget has nobody to hold on
            subject = end_user_hash
        elif scope == Scope.TENANT_AGENT:
            subject = str(agent_id)
        else:
            subject = ""
        start, end = _window(window, now, zone)
        limits = {
            "cost_usd": None if cost is None else Decimal(cost),
            "tokens": tokens,
            "requests": requests,
            "tool_calls": tools,
        }
        targets.append(_Target(budget_id, name, start, end, subject, limits))
    return agent_id, targets


def _window(window: str, now: datetime, zone: str) -> tuple[datetime, datetime]:
    bounds = _windows.get((window, zone))
    if bounds is None or not bounds[0] <= now < bounds[1]:
        bounds = _windows[(window, zone)] = window_bounds(window, now, zone)
    return bounds


def scope_cache_clear(*_: Any) -> None:
    """Forget what the hot path remembers of budgets, agents and counters: on every revision
    bump (a budget created, changed or deleted bumps its environments'), archive and restore,
    in every web process (an ``everywhere`` subscriber)."""
    _scope_cache.clear()
    _known_counters.clear()


def usd(value: Any) -> str:
    """A USD amount as the runtime API writes it: 8 places at most, no trailing zeros
    (``"4.6"``, ``"0"``), the same from PostgreSQL's numeric and SQLite's floats."""
    exact = Decimal(str(value)).quantize(Decimal("0.00000001"))
    return format(exact.normalize(), "f") if exact else "0"


def _remaining(target: _Target, row: Mapping[str, Any]) -> dict[str, str | int]:
    left: dict[str, str | int] = {}
    for metric, limit in target.limits.items():
        if limit is not None:
            value = limit - row[metric] - row[f"reserved_{metric}"]
            left[metric] = usd(value) if metric == "cost_usd" else int(value)
    return left


_COUNTER_COLUMNS = [
    *METRICS,
    *(f"reserved_{metric}" for metric in METRICS),
]


def _counter(target: _Target) -> dict[str, Any] | None:
    """The target's counter row now (None if missing), as ``{column: value}``."""
    table = _q(BudgetUsage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(_COUNTER_COLUMNS)} FROM {table} "  # noqa: S608 - table and column names are ours
            "WHERE budget_id = %s AND window_start = %s AND subject = %s",
            [target.budget_id, _adapt(target.window_start), target.subject],
        )
        row = cursor.fetchone()
    return _as_counter(row) if row is not None else None


def _as_counter(row: Sequence[Any]) -> dict[str, Any]:
    values = dict(zip(_COUNTER_COLUMNS, row, strict=True))
    for name in ("cost_usd", "reserved_cost_usd"):
        # SQLite hands back floats: 8 places, as the column stores them
        values[name] = Decimal(str(values[name])).quantize(Decimal("0.00000001"))
    return values


def _adapt(moment: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(moment)


def _ensure_counters(targets: Sequence[_Target]) -> None:
    """Create the targets' counters that do not exist yet (no lock taken on those that do)."""
    table = _q(BudgetUsage._meta.db_table)
    params: list[Any] = []
    for target in targets:
        params.extend((target.budget_id, _adapt(target.window_start), target.subject))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (budget_id, window_start, subject, "  # noqa: S608 - table and column names are ours
            + ", ".join(_COUNTER_COLUMNS)
            + ") VALUES "
            + ", ".join(["(%s, %s, %s, 0, 0, 0, 0, 0, 0, 0, 0)"] * len(targets))
            + " ON CONFLICT (budget_id, window_start, subject) DO NOTHING",
            params,
        )
    if len(_known_counters) > _SCOPE_CACHE_SIZE:
        _known_counters.clear()
    _known_counters.update((t.budget_id, t.window_start, t.subject) for t in targets)


def budget_reserve(
    *,
    tenant_id: int,
    environment_id: int,
    agent: str | int,
    key: str,
    request_id: str = "",
    end_user_hash: str = "",
    estimate: Any = None,
    token_agent_id: int | None = None,
    now: datetime | None = None,
) -> ReserveAnswer:
    """Hold ``estimate`` on every strict budget a request of ``agent`` (slug or id, of
    ``tenant_id``; of ``token_agent_id`` only, when the token names one) by ``end_user_hash``
    in ``environment_id`` falls in — on all of them or on none: granted only if for each,
    consumed + reserved + estimate <= limit for every limited metric. Idempotent by ``key``
    (a repeat of a granted reservation answers it again and holds nothing more). Holds past
    their TTL on a refusing counter are released and the reservation tried once more.
    Raises ``ValidationError`` (a bad estimate), ``UnknownAgent``."""
    amounts = amounts_parse(estimate, "estimate")
    now = now or timezone.now()
    _, targets = _targets(
        tenant_id=tenant_id,
        environment_id=environment_id,
        agent=agent,
        token_agent_id=token_agent_id,
        end_user_hash=end_user_hash,
        now=now,
    )
    expires_at = now + reservation_ttl()
    if not targets:
        return ReserveAnswer(key, True, expires_at=expires_at)
    missing = [
        t for t in targets if (t.budget_id, t.window_start, t.subject) not in _known_counters
    ]
    if missing:
        _ensure_counters(missing)
    answer: ReserveAnswer | None = None
    for attempt in range(3):
        try:
            answer = _hold(
                targets, tenant_id, environment_id, key, request_id, amounts, now, expires_at
            )
        except _CounterGone:
            # deleted after this process saw it (a budget recounted): create it, try again
            _known_counters.clear()
            _ensure_counters(targets)
            continue
        if answer is None:
            return _repeat(environment_id, key)
        if answer.granted or attempt or not _release_expired(targets, now):
            break
    if answer is None:
        raise _CounterGone
    if answer.no_room is not None:
        # Even with nothing in flight the step does not fit: the budget is gone for this
        # window, as if at 100% (its exhaustion alert, audit and announcement, once).
        from .consumption import budget_no_room  # consumption imports this module

        budget_id, start, subject, metric, size = answer.no_room
        budget_no_room(
            budget_id=budget_id, window_start=start, subject=subject, metric=metric, estimate=size
        )
    return answer


def _hold(
    targets: Sequence[_Target],
    tenant_id: int,
    environment_id: int,
    key: str,
    request_id: str,
    amounts: Amounts,
    now: datetime,
    expires_at: datetime,
) -> ReserveAnswer | None:
    """One attempt (see the module docstring); None when ``key`` is already held (a repeat)."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _hold_in_one_statement(
            targets, tenant_id, environment_id, key, request_id, amounts, now, expires_at
        )
    usage, budget, reservations = (
        _q(BudgetUsage._meta.db_table),
        _q(Budget._meta.db_table),
        _q(Reservation._meta.db_table),
    )
    limited = {
        target.budget_id: [m for m, limit in target.limits.items() if limit is not None]
        for target in targets
    }
    refused: _Target | None = None
    left: list[dict[str, Any]] = []
    mode = _commit_mode_params()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            params: list[Any] = []
            for target in targets:
                params.extend(
                    (
                        tenant_id,
                        environment_id,
                        key,
                        request_id,
                        target.budget_id,
                        _adapt(target.window_start),
                        target.subject,
                        *(amounts[metric] for metric in METRICS),
                        ReservationStatus.RESERVED.value,
                        _adapt(expires_at),
                        _adapt(now),
                    )
                )
            cursor.execute(
                f"INSERT INTO {reservations} (tenant_id, environment_id, {_q('key')}, request_id, "  # noqa: S608 - table and column names are ours
                "budget_id, window_start, subject, cost_usd, tokens, requests, tool_calls, "
                "status, expires_at, created_at) VALUES "
                + ", ".join(
                    ["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(targets)
                )
                + f" ON CONFLICT (environment_id, {_q('key')}, budget_id) DO NOTHING RETURNING id"
                + (", set_config('synchronous_commit', %s, true)" if mode else ""),
                params + mode,
            )
            if len(cursor.fetchall()) < len(targets):
                transaction.set_rollback(True)
                return None
            for target in targets:
                checks = "".join(
                    f" AND u.{metric} + u.reserved_{metric} + %s <= b.limit_{metric}"
                    for metric in limited[target.budget_id]
                )
                cursor.execute(
                    f"UPDATE {usage} AS u SET "  # noqa: S608 - table and column names are ours
                    + ", ".join(f"reserved_{m} = u.reserved_{m} + %s" for m in METRICS)
                    + f" FROM {budget} AS b WHERE b.id = u.budget_id AND u.budget_id = %s "
                    "AND u.window_start = %s AND u.subject = %s"
                    + checks
                    # unqualified: SQLite's RETURNING names the updated table's columns only
                    + " RETURNING "
                    + ", ".join(_COUNTER_COLUMNS),
                    [amounts[m] for m in METRICS]
                    + [target.budget_id, _adapt(target.window_start), target.subject]
                    + [amounts[m] for m in limited[target.budget_id]],
                )
                row = cursor.fetchone()
                if row is None:
                    transaction.set_rollback(True)
                    refused = target
                    break
                left.append(
                    {"id": target.budget_id, "remaining": _remaining(target, _as_counter(row))}
                )
    except IntegrityError:
        return None  # the same id raced itself and the other won: answer as a repeat
    if refused is not None:
        return _refusal(key, refused, amounts, targets)
    return ReserveAnswer(key, True, expires_at=expires_at, budgets=left)


def _hold_in_one_statement(
    targets: Sequence[_Target],
    tenant_id: int,
    environment_id: int,
    key: str,
    request_id: str,
    amounts: Amounts,
    now: datetime,
    expires_at: datetime,
) -> ReserveAnswer | None:
    """The attempt as one PostgreSQL statement, its own transaction: ``c`` locks the targets'
    counters (``FOR UPDATE``: the latest committed values) and says which have room; ``r``
    inserts the reservation rows only if all of them do (``ON CONFLICT DO NOTHING``: nothing
    for a repeat); ``u`` adds the estimate to the counters of the rows ``r`` inserted. So the
    hot counter's lock lasts one statement, with no round trip to Python inside it."""
    usage, budget, reservations = (
        _q(BudgetUsage._meta.db_table),
        _q(Budget._meta.db_table),
        _q(Reservation._meta.db_table),
    )
    room = " AND ".join(
        f"(b.limit_{m} IS NULL OR u.{m} + u.reserved_{m} + %s <= b.limit_{m})" for m in METRICS
    )
    keys = " OR ".join(
        ["(u.budget_id = %s AND u.window_start = %s AND u.subject = %s)"] * len(targets)
    )
    key_params: list[Any] = []
    for target in targets:
        key_params.extend((target.budget_id, target.window_start, target.subject))
    columns = ", ".join(f"u.{column}" for column in _COUNTER_COLUMNS)
    add = ", ".join(f"reserved_{m} = t.reserved_{m} + %s" for m in METRICS)
    returned = ", ".join(f"c.{column}" for column in _COUNTER_COLUMNS)
    k = _q("key")
    sql = " ".join(  # table and column names are ours, values are parameters
        [
            f"WITH c AS (SELECT u.id, u.budget_id, u.window_start, u.subject, {columns},",
            f"({room}) AS ok FROM {usage} u JOIN {budget} b ON b.id = u.budget_id",
            # locked in budget id order (the sort runs below the row locks), the order
            # consumption and every other writer lock counters in: no deadlock
            f"WHERE {keys} ORDER BY u.budget_id FOR UPDATE OF u),",
            f"r AS (INSERT INTO {reservations} (tenant_id, environment_id, {k}, request_id,",
            "budget_id, window_start, subject, cost_usd, tokens, requests, tool_calls,",
            "status, expires_at, created_at) SELECT %s, %s, %s, %s, c.budget_id,",
            "c.window_start, c.subject, %s, %s, %s, %s, %s, %s, %s FROM c",
            "WHERE (SELECT bool_and(ok) AND count(*) = %s FROM c)",
            f"ON CONFLICT (environment_id, {k}, budget_id) DO NOTHING RETURNING budget_id),",
            f"h AS (UPDATE {usage} AS t SET {add} FROM c WHERE t.id = c.id",  # noqa: S608
            "AND c.budget_id IN (SELECT budget_id FROM r) RETURNING t.budget_id)",
            f"SELECT c.budget_id, c.ok, {returned}, (SELECT count(*) FROM h),",  # noqa: S608
            "set_config('synchronous_commit', %s, true) FROM c",
        ]
    )
    params: list[Any] = [
        *(amounts[m] for m in METRICS),
        *key_params,
        tenant_id,
        environment_id,
        key,
        request_id,
        *(amounts[m] for m in METRICS),
        ReservationStatus.RESERVED.value,
        expires_at,
        now,
        len(targets),
        *(amounts[m] for m in METRICS),
        "on" if settings.BUDGET_SYNCHRONOUS_COMMIT else "off",
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found = {row[0]: row for row in rows}
    missing = [t for t in targets if t.budget_id not in found]
    if missing:
        raise _CounterGone
    held = rows[0][2 + len(_COUNTER_COLUMNS)]
    counters = {
        budget_id: _as_counter(row[2 : 2 + len(_COUNTER_COLUMNS)])
        for budget_id, row in found.items()
    }
    refused = next((t for t in targets if not found[t.budget_id][1]), None)
    if refused is not None:
        left = [
            {"id": t.budget_id, "remaining": _remaining(t, counters[t.budget_id])} for t in targets
        ]
        return _refused_by(key, refused, amounts, counters[refused.budget_id], left)
    if held < len(targets):
        return None  # a repeat: the rows of this reservation id were there already
    left = []
    for target in targets:
        after: dict[str, Any] = dict(counters[target.budget_id])
        for m in METRICS:
            after[f"reserved_{m}"] += amounts[m]
        left.append({"id": target.budget_id, "remaining": _remaining(target, after)})
    return ReserveAnswer(key, True, expires_at=expires_at, budgets=left)


def _refused_by(
    key: str,
    target: _Target,
    amounts: Amounts,
    counter: Mapping[str, Any],
    left: list[dict[str, Any]],
) -> ReserveAnswer:
    remaining = _remaining(target, counter)
    metric = next(
        (
            m
            for m, limit in target.limits.items()
            if limit is not None and counter[m] + counter[f"reserved_{m}"] + amounts[m] > limit
        ),
        next(m for m, limit in target.limits.items() if limit is not None),
    )
    limit = target.limits[metric]
    # Gone for the window only when a step of ordinary size no longer fits even with nothing
    # else in flight; one outsized step (over a tenth of the limit) is refused alone.
    no_room = (
        limit is not None
        and counter[metric] + amounts[metric] > limit
        and amounts[metric] <= limit * NO_ROOM_STEP_SHARE
    )
    return ReserveAnswer(
        key,
        False,
        refused_by={
            "id": target.budget_id,
            "name": target.name,
            "metric": metric,
            "remaining": remaining.get(metric),
            "resets_at": target.resets_at.isoformat(),
        },
        budgets=left,
        no_room=(
            (target.budget_id, target.window_start, target.subject, metric, amounts[metric])
            if no_room
            else None
        ),
    )


def _refusal(
    key: str, target: _Target, amounts: Amounts, targets: Sequence[_Target]
) -> ReserveAnswer:
    """The refusal by ``target``, with what remains of every target (read after the attempt
    was rolled back: committed values)."""
    found = {t.budget_id: _counter(t) for t in targets}
    if found[target.budget_id] is None:
        raise _CounterGone
    counters = {k: v or dict.fromkeys(_COUNTER_COLUMNS, 0) for k, v in found.items()}
    left = [{"id": t.budget_id, "remaining": _remaining(t, counters[t.budget_id])} for t in targets]
    return _refused_by(key, target, amounts, counters[target.budget_id], left)


def _repeat(environment_id: int, key: str) -> ReserveAnswer:
    """The answer to a reservation id already held in this environment."""
    parts = list(
        Reservation.objects.filter(environment_id=environment_id, key=key).order_by("budget_id")
    )
    budgets = []
    for part in parts:
        target = _target_of(part)
        counter = _counter(target) or dict.fromkeys(_COUNTER_COLUMNS, 0)
        budgets.append({"id": part.budget_id, "remaining": _remaining(target, counter)})
    return ReserveAnswer(
        key, True, expires_at=parts[0].expires_at if parts else None, budgets=budgets
    )


def _target_of(part: Reservation) -> _Target:
    budget = part.budget
    return _Target(
        budget.pk, budget.name, part.window_start, part.window_start, part.subject, budget.limits()
    )


def budget_settle(
    *,
    tenant_id: int,
    environment_id: int,
    key: str,
    actual: Any,
    now: datetime | None = None,
) -> SettleAnswer:
    """Replace the estimate held by reservation ``key`` (of ``environment_id``: the runtime
    token's; another environment's is unknown here) with the ``actual`` amounts, held
    until the request's record arrives (telemetry then counts it and releases the hold) or
    the TTL passes. Idempotent: a repeat answers ``duplicate`` and changes nothing; a
    reservation already released or expired answers its status. Raises
    ``UnknownReservation``, ``ValidationError`` for bad amounts."""
    amounts = amounts_parse(actual, "actual")
    now = now or timezone.now()
    with transaction.atomic():
        parts = list(
            Reservation.objects.select_for_update()
            .filter(tenant_id=tenant_id, environment_id=environment_id, key=key)
            .order_by("budget_id")
        )
        if not parts:
            raise UnknownReservation(key)
        if any(part.status != ReservationStatus.RESERVED for part in parts):
            status = parts[0].status
            return SettleAnswer(key, status, duplicate=status == ReservationStatus.SETTLED)
        for part in parts:
            _move(part, {m: amounts[m] - getattr(part, m) for m in METRICS})
        Reservation.objects.filter(pk__in=[part.pk for part in parts]).update(
            status=ReservationStatus.SETTLED,
            settled_at=now,
            expires_at=now + reservation_ttl(),
            **amounts,
        )
    return SettleAnswer(key, ReservationStatus.SETTLED, duplicate=False)


def _move(part: Reservation, delta: Mapping[str, Decimal | int]) -> None:
    """Add ``delta`` to the reserved amounts of ``part``'s counter."""
    _move_counter(part.budget_id, part.window_start, part.subject, delta)


def _move_counter(
    budget_id: int, window_start: datetime, subject: str, delta: Mapping[str, Decimal | int]
) -> None:
    table = _q(BudgetUsage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET "  # noqa: S608 - table and column names are ours
            + ", ".join(f"reserved_{m} = reserved_{m} + %s" for m in METRICS)
            + " WHERE budget_id = %s AND window_start = %s AND subject = %s",
            [delta[m] for m in METRICS] + [budget_id, _adapt(window_start), subject],
        )


CounterKey = tuple[int, datetime, str]


def holds_take(
    reservations: QuerySet[Reservation], status: str
) -> tuple[int, dict[CounterKey, Amounts]]:
    """Lock the held ``reservations`` (in ``(budget_id, pk)`` order), mark them ``status``
    (``released`` or ``expired``) and return how many they were and, per counter ``(budget
    id, window start, subject)``, the amounts to take off its ``reserved_*``: the caller
    applies them in the counters' key order. Inside the caller's transaction.

    The lock order every writer keeps: reservation rows first, then counters, each sorted
    (reserve, settle, release, expiry, consumption). Locking a counter and then a
    reservation row (as consumption did) deadlocks with a settle or an expiry of the same
    hold."""
    parts = list(
        reservations.select_for_update().filter(status__in=HELD).order_by("budget_id", "pk")
    )
    taken: dict[CounterKey, Amounts] = {}
    for part in parts:
        entry = taken.setdefault(
            (part.budget_id, part.window_start, part.subject),
            {m: Decimal(0) if m == "cost_usd" else 0 for m in METRICS},
        )
        for m in METRICS:
            entry[m] += getattr(part, m)
    if parts:
        Reservation.objects.filter(pk__in=[part.pk for part in parts]).update(status=status)
    return len(parts), taken


def _take_off(taken: Mapping[CounterKey, Amounts]) -> None:
    """Take ``taken`` (see ``holds_take``) off the counters' reserved amounts, in key order."""
    for (budget_id, window_start, subject), amounts in sorted(taken.items()):
        _move_counter(budget_id, window_start, subject, {m: -amounts[m] for m in METRICS})


def release(reservations: QuerySet[Reservation], status: str) -> int:
    """Take the held amounts of ``reservations`` off their counters and mark them ``status``
    (``released`` or ``expired``); inside the caller's transaction (one is opened if none).
    Returns how many were released."""
    with transaction.atomic():
        count, taken = holds_take(reservations, status)
        _take_off(taken)
    return count


def release_requests(*, tenant_id: int, request_ids: Iterable[str]) -> int:
    """The records of ``request_ids`` arrived: their holds are released (telemetry counts
    them now)."""
    return release(
        Reservation.objects.filter(tenant_id=tenant_id, request_id__in=list(request_ids)),
        ReservationStatus.RELEASED,
    )


def _release_expired(targets: Sequence[_Target], now: datetime) -> int:
    released = 0
    for target in targets:
        released += release(
            Reservation.objects.filter(
                budget_id=target.budget_id,
                window_start=target.window_start,
                subject=target.subject,
                expires_at__lte=now,
            ),
            ReservationStatus.EXPIRED,
        )
    return released


def reservations_expire(*, now: datetime | None = None) -> int:
    """Release every reservation or settled hold whose TTL has passed (the beat). Returns how
    many were released."""
    now = now or timezone.now()
    return release(Reservation.objects.filter(expires_at__lte=now), ReservationStatus.EXPIRED)


def reservations_purge(*, older_than: timedelta = timedelta(days=2)) -> int:
    """Delete released and expired reservations older than ``older_than`` (housekeeping)."""
    cutoff = timezone.now() - older_than
    deleted, _ = Reservation.objects.exclude(status__in=HELD).filter(created_at__lt=cutoff).delete()
    return deleted
