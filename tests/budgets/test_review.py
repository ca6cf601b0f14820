"""Review findings of budgets: lock order between consumption, settle, expiry and reserve (no
deadlock), and a recount that must not leave holds behind to be taken off the new counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction

from apps.budgets.models import Budget, BudgetUsage, Reservation
from apps.budgets.services import (
    budget_reserve,
    budget_settle,
    budget_update,
    consumption_apply,
    reservations_expire,
)
from apps.budgets.windows import window_bounds
from apps.tenancy.models import Agent, Tenant
from tests.factories import AgentFactory
from tests.races import postgresql_only

from .conftest import ACTOR, make_daily


def production_id(tenant: Tenant) -> int:
    return tenant.environments.get(slug="production").pk


pytestmark = pytest.mark.django_db(transaction=True)


def _usage(budget: Budget, subject: str = "") -> BudgetUsage:
    start, _ = window_bounds(budget.window, datetime.now(UTC), budget.tenant.time_zone)
    return BudgetUsage.objects.get(budget=budget, window_start=start, subject=subject)


def _env_id(tenant: Tenant) -> int:
    return tenant.environments.get(slug="production").pk


def _reserve(tenant: Tenant, agent: Agent, key: str, **estimate: Any):  # type: ignore[no-untyped-def]
    return budget_reserve(
        tenant_id=tenant.pk,
        environment_id=_env_id(tenant),
        agent=agent.slug,
        key=key,
        request_id=key.split(":")[0],
        estimate=estimate,
    )


def _waiting_on_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def _wait_for_lock_waiters(count: int) -> None:
    deadline = time.monotonic() + 10
    while _waiting_on_locks() < count:
        assert time.monotonic() < deadline, "the other transaction never waited on a lock"
        time.sleep(0.02)


class _Thread(threading.Thread):
    """Runs ``fn`` on its own connection and keeps what it raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()


def _hold_lock_on(
    budget: Budget, start: datetime, subject: str, go: threading.Event, held: threading.Event
) -> Callable[[], None]:
    def run() -> None:
        with transaction.atomic():
            list(
                BudgetUsage.objects.select_for_update().filter(
                    budget=budget, window_start=start, subject=subject
                )
            )
            held.set()
            go.wait(10)

    return run


def _hold_lock_on_reservation(key: str, go: threading.Event, held: threading.Event):  # type: ignore[no-untyped-def]
    def run() -> None:
        with transaction.atomic():
            list(Reservation.objects.select_for_update().filter(key=key))
            held.set()
            go.wait(10)

    return run


@pytest.mark.parametrize("other", ["settle", "expire"])
def test_record_arriving_while_a_hold_is_settled_or_expired__no_deadlock(
    tenant: Tenant, agent: Agent, other: str
) -> None:
    """Consumption locked the counter, then the reservation rows; settle and the expiry beat
    lock the reservation rows, then the counter: the two deadlocked (one of them failed and
    its change was lost). Every path now takes reservation rows first, then counters."""
    postgresql_only()
    budget = make_daily(tenant, strict=True, action="block", limits={"cost_usd": "10"})
    assert _reserve(tenant, agent, "q1:1", cost_usd="2").granted
    start, _ = window_bounds(budget.window, datetime.now(UTC), budget.tenant.time_zone)
    go, held = threading.Event(), threading.Event()
    blocker = _Thread(_hold_lock_on(budget, start, "", go, held))
    blocker.start()
    assert held.wait(10)
    # 1. consumption of q1's record queues on the counter (the old order) or on the
    #    reservation row (the new one) ...
    consume = _Thread(
        lambda: consumption_apply(
            tenant_id=tenant.pk,
            environment_id=_env_id(tenant),
            usage=[[agent.pk, "", datetime.now(UTC).isoformat(), "0.5", 0, 1, 0]],
            request_ids=["q1"],
        )
    )
    # ... 2. while settle / the expiry takes the reservation row and queues on the counter.
    if other == "settle":
        second = _Thread(
            lambda: budget_settle(
                tenant_id=tenant.pk,
                environment_id=production_id(tenant),
                key="q1:1",
                actual={"cost_usd": "0.5"},
            )
        )
    else:
        Reservation.objects.update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        second = _Thread(lambda: reservations_expire())
    consume.start()
    _wait_for_lock_waiters(1)
    second.start()
    _wait_for_lock_waiters(2)
    go.set()
    for thread in (blocker, consume, second):
        thread.join(30)
    assert consume.error is None, consume.error
    assert second.error is None, second.error
    row = _usage(budget)
    assert row.cost_usd == Decimal("0.5")
    assert row.reserved_cost_usd == 0  # the hold was taken off exactly once
    assert Reservation.objects.get().status in ("released", "expired")


def test_reserve_on_two_strict_budgets_while_consumption_counts_both__no_deadlock(
    tenant: Tenant, agent: Agent
) -> None:
    """The one-statement reservation locked its counters in the order the scan met them
    (physical order), consumption in key order: with two strict budgets they deadlocked.
    Both now lock in budget id order."""
    postgresql_only()
    other_agent: Agent = AgentFactory(tenant=tenant, slug="other-bot", name="Other")  # type: ignore[assignment]
    first = make_daily(
        tenant,
        name="agent daily",
        scope="agent",
        agent=agent,
        strict=True,
        action="block",
        limits={"cost_usd": "10"},
    )
    second = make_daily(
        tenant, name="tenant daily", strict=True, action="block", limits={"cost_usd": "10"}
    )
    assert first.pk < second.pk
    now = datetime.now(UTC)
    # the tenant budget's counter first (physically before the agent budget's)
    consumption_apply(
        tenant_id=tenant.pk,
        environment_id=_env_id(tenant),
        usage=[[other_agent.pk, "", now.isoformat(), "0.1", 0, 1, 0]],
    )
    assert _reserve(tenant, agent, "w0:1", cost_usd="0.1").granted  # creates the agent's counter
    start, _ = window_bounds("day", now, tenant.time_zone)
    go, held = threading.Event(), threading.Event()
    blocker = _Thread(_hold_lock_on(first, start, "", go, held))
    blocker.start()
    assert held.wait(10)
    consume = _Thread(
        lambda: consumption_apply(
            tenant_id=tenant.pk,
            environment_id=_env_id(tenant),
            usage=[[agent.pk, "", now.isoformat(), "0.2", 0, 1, 0]],
        )
    )
    consume.start()  # waits on the agent budget's counter (the first in key order)
    _wait_for_lock_waiters(1)
    reserve = _Thread(lambda: _reserve(tenant, agent, "w1:1", cost_usd="1"))
    reserve.start()
    _wait_for_lock_waiters(2)
    go.set()
    for thread in (blocker, consume, reserve):
        thread.join(30)
    assert consume.error is None, consume.error
    assert reserve.error is None, reserve.error
    assert _usage(first).reserved_cost_usd == Decimal("1.1")
    assert _usage(first).cost_usd == Decimal("0.2")
    assert _usage(second).cost_usd == Decimal("0.3")


def test_recount__holds_of_the_old_counters_are_not_taken_off_the_new_ones(
    tenant: Tenant, agent: Agent
) -> None:
    """A change of scope, agent, environment or window recounts: the counters go, and with
    them what they held. A reservation left behind was later settled and released against the
    new counter, whose ``reserved`` went negative: room past the limit."""
    budget = make_daily(tenant, strict=True, action="block", limits={"cost_usd": "10"})
    assert _reserve(tenant, agent, "q1:1", cost_usd="2").granted
    data = {
        "name": budget.name,
        "scope": "tenant",
        "window": "day",
        "environment": tenant.environments.get(slug="production"),
        "limits": {"cost_usd": "10"},
        "action": "block",
        "strict": True,
    }
    budget = budget_update(actor=ACTOR, budget=budget, data=data)
    budget_settle_answer: Any
    try:
        budget_settle_answer = budget_settle(
            tenant_id=tenant.pk,
            environment_id=production_id(tenant),
            key="q1:1",
            actual={"cost_usd": "0.5"},
        )
    except LookupError:
        budget_settle_answer = None
    consumption_apply(
        tenant_id=tenant.pk,
        environment_id=_env_id(tenant),
        usage=[[agent.pk, "", datetime.now(UTC).isoformat(), "0.5", 0, 1, 0]],
        request_ids=["q1"],
    )
    row = _usage(budget)
    assert row.reserved_cost_usd == 0, budget_settle_answer
    assert row.cost_usd == Decimal("0.5")
    # and the limit holds: 9.5 left, not 11.5
    assert not _reserve(tenant, agent, "q2:1", cost_usd="9.6").granted
