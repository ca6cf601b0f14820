"""Strict budgets: reserve before a step, settle after; concurrent reservations never pass the
limit; settle is idempotent; holds are released by the request's record or by the TTL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from apps.budgets.models import Budget, BudgetUsage, Reservation
from apps.budgets.services import (
    UnknownReservation,
    budget_reserve,
    budget_settle,
    consumption_apply,
    reservations_expire,
)
from apps.budgets.windows import window_bounds
from apps.telemetry.services import records_ingest
from apps.tenancy.models import Agent, Tenant
from tests.races import postgresql_only, race

from .conftest import ACTOR, make_daily
from .test_counting import record


def production_id(tenant: Tenant) -> int:
    return tenant.environments.get(slug="production").pk


pytestmark = pytest.mark.django_db(transaction=True)


def usage(budget: Budget, subject: str = "") -> BudgetUsage:
    """The current window's counter (an empty one when none was written)."""
    start, _ = window_bounds(budget.window, datetime.now(UTC), budget.tenant.time_zone)
    found = BudgetUsage.objects.filter(budget=budget, window_start=start, subject=subject).first()
    return found or BudgetUsage(budget=budget, window_start=start, subject=subject)


def reserve(tenant: Tenant, agent: Agent, key: str, user: str = "", **estimate: Any):  # type: ignore[no-untyped-def]
    return budget_reserve(
        tenant_id=tenant.pk,
        environment_id=tenant.environments.get(slug="production").pk,
        agent=agent.slug,
        key=key,
        request_id=key.split(":")[0],
        end_user_hash=user,
        estimate=estimate or {"cost_usd": "1"},
    )


def strict(tenant: Tenant, **fields: Any) -> Budget:
    return make_daily(tenant, strict=True, action="block", **fields)


def test_no_strict_budget__granted_and_nothing_held(tenant: Tenant, agent: Agent) -> None:
    make_daily(tenant)  # soft
    answer = reserve(tenant, agent, "r1:1")
    assert answer.granted and answer.budgets == []
    assert not Reservation.objects.exists()


def test_granted_until_the_limit__then_refused_with_what_remains(
    tenant: Tenant, agent: Agent
) -> None:
    budget = strict(tenant, limits={"cost_usd": "2.50", "tool_calls": 100})
    assert reserve(tenant, agent, "r1:1").as_json()["budgets"] == [
        {"id": budget.pk, "remaining": {"cost_usd": "1.5", "tool_calls": 100}}
    ]
    assert reserve(tenant, agent, "r2:1").granted
    refused = reserve(tenant, agent, "r3:1").as_json()
    assert refused["granted"] is False
    assert refused["refused_by"]["id"] == budget.pk
    assert refused["refused_by"]["metric"] == "cost_usd"
    assert Decimal(refused["refused_by"]["remaining"]) == Decimal("0.5")
    assert Reservation.objects.count() == 2  # the refusal held nothing
    assert usage(budget).reserved_cost_usd == Decimal(2)
    # a smaller step still fits
    assert reserve(tenant, agent, "r4:1", cost_usd="0.5").granted


def test_repeat_of_a_granted_reservation__same_answer_held_once(
    tenant: Tenant, agent: Agent
) -> None:
    budget = strict(tenant, limits={"cost_usd": "10"})
    first = reserve(tenant, agent, "r1:1")
    again = reserve(tenant, agent, "r1:1")
    assert again.granted and again.expires_at == first.expires_at
    assert usage(budget).reserved_cost_usd == Decimal(1)


def test_one_budget_refuses__none_of_them_holds(tenant: Tenant, agent: Agent) -> None:
    roomy = strict(tenant, name="roomy", limits={"cost_usd": "100"})
    tight = strict(tenant, name="tight", scope="agent", agent=agent, limits={"tool_calls": 1})
    assert not reserve(tenant, agent, "r1:1", cost_usd="1", tool_calls=2).granted
    assert usage(roomy).reserved_cost_usd == 0
    assert usage(tight).reserved_tool_calls == 0


def test_end_user_budget__per_user_and_no_user_is_not_held(tenant: Tenant, agent: Agent) -> None:
    budget = strict(tenant, scope="end_user", agent=agent, limits={"requests": 1})
    assert reserve(tenant, agent, "a:1", user="u1", requests=1).granted
    assert not reserve(tenant, agent, "b:1", user="u1", requests=1).granted
    assert reserve(tenant, agent, "c:1", user="u2", requests=1).granted
    assert reserve(tenant, agent, "d:1", user="", requests=1).granted
    assert usage(budget, "u1").reserved_requests == 1


@pytest.mark.parametrize(("limit", "estimate"), [("10", "1"), ("9.99", "0.37"), ("1", "0.3")])
def test_sixteen_threads_near_the_limit__never_over(
    tenant: Tenant, agent: Agent, limit: str, estimate: str
) -> None:
    postgresql_only()
    budget = strict(tenant, limits={"cost_usd": limit})
    consumption_apply(  # already spent a little
        tenant_id=tenant.pk,
        environment_id=tenant.environments.get(slug="production").pk,
        usage=[[agent.pk, "", datetime.now(UTC).isoformat(), "0.5", 0, 1, 0]],
    )
    calls = [
        (lambda n=n, i=i: reserve(tenant, agent, f"t{n}:{i}", cost_usd=estimate))
        for n in range(16)
        for i in range(3)
    ]
    results, errors = race(*calls)
    assert errors == [] and len(results) == 48
    granted = sum(1 for answer in results if answer.granted)
    expected = int((Decimal(limit) - Decimal("0.5")) / Decimal(estimate))
    assert granted == expected
    row = usage(budget)
    assert row.cost_usd + row.reserved_cost_usd <= Decimal(limit)
    assert row.reserved_cost_usd == Decimal(estimate) * granted


def test_settle_twice__counted_once(tenant: Tenant, agent: Agent) -> None:
    budget = strict(tenant, limits={"cost_usd": "10"})
    reserve(tenant, agent, "r1:1", cost_usd="2")
    first = budget_settle(
        tenant_id=tenant.pk,
        environment_id=production_id(tenant),
        key="r1:1",
        actual={"cost_usd": "0.75", "tokens": 30},
    )
    second = budget_settle(
        tenant_id=tenant.pk,
        environment_id=production_id(tenant),
        key="r1:1",
        actual={"cost_usd": "0.75", "tokens": 30},
    )
    assert (first.status, first.duplicate) == ("settled", False)
    assert (second.status, second.duplicate) == ("settled", True)
    row = usage(budget)
    assert row.reserved_cost_usd == Decimal("0.75") and row.reserved_tokens == 30
    with pytest.raises(UnknownReservation):
        budget_settle(
            tenant_id=tenant.pk, environment_id=production_id(tenant), key="nope", actual={}
        )


def test_settle_twice_concurrently__counted_once(tenant: Tenant, agent: Agent) -> None:
    postgresql_only()
    budget = strict(tenant, limits={"cost_usd": "10"})
    reserve(tenant, agent, "r1:1", cost_usd="2")
    results, errors = race(
        *[
            lambda: budget_settle(
                tenant_id=tenant.pk,
                environment_id=production_id(tenant),
                key="r1:1",
                actual={"cost_usd": "0.5"},
            )
        ]
        * 8
    )
    assert errors == [] and sum(1 for answer in results if not answer.duplicate) == 1
    assert usage(budget).reserved_cost_usd == Decimal("0.5")


def test_record_arrives__hold_released_and_counted_once(
    tenant: Tenant, agent: Agent, token
) -> None:  # type: ignore[no-untyped-def]
    budget = strict(tenant, limits={"cost_usd": "10"})
    request_id = uuid.uuid4().hex
    reserve(tenant, agent, f"{request_id}:1", cost_usd="2")
    budget_settle(
        tenant_id=tenant.pk,
        environment_id=production_id(tenant),
        key=f"{request_id}:1",
        actual={"cost_usd": "0.25"},
    )
    records_ingest(token=token, records=[record(request_id=request_id)])
    row = usage(budget)
    assert row.cost_usd == Decimal("0.25") and row.reserved_cost_usd == 0
    assert Reservation.objects.get().status == "released"
    # settling after the record changed nothing
    assert (
        budget_settle(
            tenant_id=tenant.pk,
            environment_id=production_id(tenant),
            key=f"{request_id}:1",
            actual={},
        ).status
        == "released"
    )
    assert usage(budget).reserved_cost_usd == 0


def test_expired_reservations__released(tenant: Tenant, agent: Agent) -> None:
    budget = strict(tenant, limits={"cost_usd": "2"})
    reserve(tenant, agent, "r1:1", cost_usd="2")
    assert not reserve(tenant, agent, "r2:1").granted
    assert reservations_expire() == 0
    assert reservations_expire(now=datetime.now(UTC) + timedelta(seconds=121)) == 1
    assert usage(budget).reserved_cost_usd == 0
    assert (
        budget_settle(
            tenant_id=tenant.pk,
            environment_id=production_id(tenant),
            key="r1:1",
            actual={"cost_usd": "1"},
        ).status
        == "expired"
    )
    assert usage(budget).reserved_cost_usd == 0
    assert reserve(tenant, agent, "r3:1").granted


def test_reserve_releases_expired_holds_of_its_budget_first(tenant: Tenant, agent: Agent) -> None:
    budget = strict(tenant, limits={"cost_usd": "2"})
    reserve(tenant, agent, "r1:1", cost_usd="2")
    Reservation.objects.update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert reserve(tenant, agent, "r2:1", cost_usd="2").granted
    assert usage(budget).reserved_cost_usd == Decimal(2)


@pytest.mark.parametrize(
    ("estimate", "field"),
    [
        ({"cost_usd": "-1"}, "estimate.cost_usd"),
        ({"cost_usd": "abc"}, "estimate.cost_usd"),
        ({"tokens": 1.5}, "estimate.tokens"),
        ({"tool_calls": -2}, "estimate.tool_calls"),
        ({"dollars": 1}, "estimate.dollars"),
        ({"cost_usd": "1e400"}, "estimate.cost_usd"),
    ],
)
def test_bad_estimate__field_error_and_nothing_held(
    tenant: Tenant, agent: Agent, estimate: dict[str, Any], field: str
) -> None:
    strict(tenant, limits={"cost_usd": "2"})
    with pytest.raises(ValidationError) as caught:
        reserve(tenant, agent, "r1:1", **estimate)
    assert field in caught.value.message_dict
    assert not Reservation.objects.exists()


def test_no_room_left_for_a_step__exhausted_once_and_runtimes_told(
    tenant: Tenant, agent: Agent
) -> None:
    from apps.alerts.models import Alert
    from apps.budgets.selectors import budgets_for_snapshot

    strict(tenant, limits={"cost_usd": "1.00"})
    production = tenant.environments.get(slug="production")
    consumption_apply(
        tenant_id=tenant.pk,
        environment_id=production.pk,
        usage=[[agent.pk, "", datetime.now(UTC).isoformat(), "0.95", 0, 1, 0]],
    )
    revision = type(production).objects.get(pk=production.pk).revision
    # refused only because another step is in flight: not exhausted
    assert reserve(tenant, agent, "a:1", cost_usd="0.04").granted
    assert not reserve(tenant, agent, "b:1", cost_usd="0.04").granted
    assert not Alert.objects.filter(kind="budget.exhausted").exists()
    # a step that cannot fit even alone: the budget is gone for this window
    assert not reserve(tenant, agent, "c:1", cost_usd="0.10").granted
    assert not reserve(tenant, agent, "d:1", cost_usd="0.10").granted
    assert Alert.objects.filter(kind="budget.exhausted").count() == 1
    assert "no longer fits" in Alert.objects.get(kind="budget.exhausted").title
    assert type(production).objects.get(pk=production.pk).revision > revision
    [document] = budgets_for_snapshot(
        tenant_id=tenant.pk, environment_id=production.pk, agent_id=None
    )
    assert document["state"] == "exhausted"


def test_limit_raised__no_longer_exhausted(tenant: Tenant, agent: Agent) -> None:
    from apps.budgets.selectors import budgets_for_snapshot
    from apps.budgets.services import budget_update

    budget = strict(tenant, limits={"cost_usd": "1.00"})
    production = tenant.environments.get(slug="production")
    consumption_apply(
        tenant_id=tenant.pk,
        environment_id=production.pk,
        usage=[[agent.pk, "", datetime.now(UTC).isoformat(), "1.20", 0, 1, 0]],
    )
    [document] = budgets_for_snapshot(
        tenant_id=tenant.pk, environment_id=production.pk, agent_id=None
    )
    assert document["state"] == "exhausted"
    data = {**budget.snapshot(), "agent": None, "environment": None, "limits": {"cost_usd": "2"}}
    budget_update(actor=ACTOR, budget=budget, data=data)
    [document] = budgets_for_snapshot(
        tenant_id=tenant.pk, environment_id=production.pk, agent_id=None
    )
    assert document["state"] == "ok"
    assert reserve(tenant, agent, "a:1", cost_usd="0.5").granted


def test_one_outsized_step_refused__budget_not_exhausted(tenant: Tenant, agent: Agent) -> None:
    from apps.alerts.models import Alert

    strict(tenant, limits={"cost_usd": "1.00"})
    consumption_apply(
        tenant_id=tenant.pk,
        environment_id=production_id(tenant),
        usage=[[agent.pk, "", datetime.now(UTC).isoformat(), "0.50", 0, 1, 0]],
    )
    assert not reserve(tenant, agent, "big:1", cost_usd="0.60").granted  # 60% of the limit
    assert not Alert.objects.filter(kind="budget.exhausted").exists()
    assert reserve(tenant, agent, "small:1", cost_usd="0.05").granted
