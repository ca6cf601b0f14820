"""Consumption counted from telemetry as it is ingested (the event seam), thresholds raised
once per window, exhaustion in the snapshot, the window roll, budgets changed mid-window.

Ingestion runs through ``records_ingest`` / ``buckets_ingest`` with real commits
(``transaction=True``), so the after-commit subscriber runs as in production."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from apps.alerts.models import Alert
from apps.audit.models import AuditEvent
from apps.budgets.models import Budget, BudgetMark, BudgetUsage
from apps.budgets.selectors import budget_status, budgets_for_snapshot
from apps.budgets.services import budget_update, budgets_roll, consumption_apply
from apps.budgets.windows import window_bounds
from apps.telemetry.services import buckets_ingest, records_ingest
from apps.tenancy.models import Agent, Environment, Tenant
from tests.factories import AgentFactory
from tests.races import postgresql_only, race

from .conftest import ACTOR, make_daily, roomy_hour

pytestmark = pytest.mark.django_db(transaction=True)


def record(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "agent": "support-bot",
        "session_id": "s-1",
        "end_user_hash": "u-1",
        "version_digest": "a" * 64,
        "variant": "stable",
        # this second: in the minute, so the hour and day windows, of now (a second ago was
        # yesterday's in the first second of a day)
        "started_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "latency_ms": 100,
        "steps": 2,
        "tool_calls": 3,
        "tokens_in": 100,
        "tokens_out": 20,
        "cost_usd": "0.25",
        "model": "gpt-x",
        "outcome": "success",
    }
    data.update(fields)
    return data


def usage_of(budget: Budget, subject: str = "") -> BudgetUsage:
    start, _ = window_bounds(budget.window, datetime.now(UTC), budget.tenant.time_zone)
    return BudgetUsage.objects.get(budget=budget, window_start=start, subject=subject)


def production(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="production")


def test_records__counted_in_every_metric(tenant: Tenant, agent: Agent, token) -> None:  # type: ignore[no-untyped-def]
    budget = make_daily(tenant, limits={"cost_usd": "100", "tokens": 10**6})
    records_ingest(
        token=token,
        records=[record(), record(cost_usd="0.5"), record(outcome="budget_blocked", cost_usd="0")],
    )
    row = usage_of(budget)
    assert row.cost_usd == Decimal("0.75")
    assert row.tokens == 360
    assert row.requests == 2  # the blocked one was not served
    assert row.tool_calls == 9
    # a record sent twice is counted once (telemetry's idempotency)
    again = record(request_id="same")
    records_ingest(token=token, records=[again])
    records_ingest(token=token, records=[again])
    assert usage_of(budget).requests == 3


def test_buckets__counted_without_end_users(tenant: Tenant, agent: Agent, token) -> None:  # type: ignore[no-untyped-def]
    from tests.telemetry.test_api import bucket

    tenant_budget = make_daily(tenant, limits={"requests": 10**6})
    per_user = make_daily(
        tenant, name="per user", scope="end_user", agent=agent, limits={"requests": 10}
    )
    # buckets start a minute back: in the first minute of a day, at the day's start instead
    today, _ = window_bounds("day", datetime.now(UTC), tenant.time_zone)
    at = max(datetime.fromisoformat(bucket()["bucket_start"]), today).isoformat()
    item = bucket(bucket_start=at)
    buckets_ingest(token=token, instance_id="rt-1", buckets=[item])
    buckets_ingest(
        token=token,
        instance_id="rt-1",
        buckets=[
            bucket(
                bucket_start=at,
                count_success=1,
                count_error=1,
                count_budget_blocked=2,
                variant="stable",
            )
        ],
    )
    row = usage_of(tenant_budget)
    assert row.requests == 4 + 2  # the two blocked requests were not served
    assert row.cost_usd == Decimal("0.08") and row.tool_calls == 10
    assert not BudgetUsage.objects.filter(budget=per_user).exists()


def test_scopes__subjects_and_filters(tenant: Tenant, agent: Agent, token) -> None:  # type: ignore[no-untyped-def]
    AgentFactory(tenant=tenant, slug="refund-agent", name="Refund agent")
    other = make_daily(
        tenant, name="refunds only", scope="agent", agent=Agent.objects.get(slug="refund-agent")
    )
    mine = make_daily(tenant, name="support", scope="agent", agent=agent)
    each = make_daily(tenant, name="each agent", scope="tenant_agent")
    users = make_daily(tenant, name="users", scope="end_user", agent=agent)
    staging = make_daily(
        tenant, name="staging only", environment=tenant.environments.get(slug="staging")
    )
    records_ingest(
        token=token,
        records=[
            record(end_user_hash="u-1"),
            record(end_user_hash="u-2"),
            record(agent="refund-agent", end_user_hash="u-1"),
        ],
    )
    assert usage_of(mine).requests == 2
    assert usage_of(other).requests == 1
    assert usage_of(each, str(agent.pk)).requests == 2
    assert usage_of(users, "u-1").requests == 1 and usage_of(users, "u-2").requests == 1
    assert not BudgetUsage.objects.filter(budget=staging).exists()


def test_sixteen_ingesters__consumption_is_the_exact_sum(
    tenant: Tenant, agent: Agent, token
) -> None:  # type: ignore[no-untyped-def]
    postgresql_only()
    budget = make_daily(tenant, limits={"cost_usd": "1000000"})
    batches = [
        [record(cost_usd=f"0.{thread:02d}{index:03d}1") for index in range(25)]
        for thread in range(16)
    ]
    expected = sum(Decimal(item["cost_usd"]) for batch in batches for item in batch)
    results, errors = race(
        *[lambda batch=batch: records_ingest(token=token, records=batch) for batch in batches]
    )
    assert errors == [] and len(results) == 16
    row = usage_of(budget)
    assert row.cost_usd == expected
    assert row.requests == 400
    assert row.tool_calls == 1200


def test_thresholds__each_alert_once_per_window(tenant: Tenant, agent: Agent, token) -> None:  # type: ignore[no-untyped-def]
    budget = make_daily(tenant, limits={"cost_usd": "1.00"}, action="block")
    environment = production(tenant)
    revision = Environment.objects.get(pk=environment.pk).revision
    for _ in range(12):  # 12 x $0.25: 25%, 50%, ... 300%
        records_ingest(token=token, records=[record()])
    kinds = list(Alert.objects.filter(tenant=tenant).order_by("pk").values_list("kind", flat=True))
    assert kinds == ["budget.threshold", "budget.threshold", "budget.exhausted"]
    assert sorted(BudgetMark.objects.filter(budget=budget).values_list("threshold", flat=True)) == [
        50,
        80,
        100,
    ]
    assert AuditEvent.objects.filter(action="budget.exhausted").count() == 1
    assert Environment.objects.get(pk=environment.pk).revision > revision
    [document] = budgets_for_snapshot(
        tenant_id=tenant.pk, environment_id=environment.pk, agent_id=None
    )
    assert document["state"] == "exhausted"
    assert document["action"] == "block"
    assert document["limits"] == {
        "cost_usd": "1",
        "tokens": None,
        "requests": None,
        "tool_calls": None,
    }


def test_thresholds__concurrent_crossings_alert_once(tenant: Tenant, agent: Agent, token) -> None:  # type: ignore[no-untyped-def]
    postgresql_only()
    make_daily(tenant, limits={"cost_usd": "2.00"}, action="block")
    batches = [[record()] for _ in range(16)]  # 16 x $0.25 = 200%
    _, errors = race(
        *[lambda batch=batch: records_ingest(token=token, records=batch) for batch in batches]
    )
    assert errors == []
    assert Alert.objects.filter(kind="budget.threshold").count() == 2
    assert Alert.objects.filter(kind="budget.exhausted").count() == 1


def test_per_subject_exhaustion__only_that_subject(tenant: Tenant, agent: Agent, token) -> None:  # type: ignore[no-untyped-def]
    make_daily(
        tenant, name="users", scope="end_user", agent=agent, limits={"requests": 2}, action="block"
    )
    make_daily(
        tenant,
        name="agents",
        scope="tenant_agent",
        limits={"requests": 3},
        action="degrade",
        degrade_mode="model",
        degrade_model="small-1",
    )
    records_ingest(
        token=token,
        records=[record(end_user_hash="heavy") for _ in range(3)] + [record(end_user_hash="light")],
    )
    users, agents = budgets_for_snapshot(
        tenant_id=tenant.pk, environment_id=production(tenant).pk, agent_id=None
    )
    assert users["state"] == "ok" and users["exhausted_subjects"] == ["heavy"]
    assert agents["exhausted_subjects"] == ["support-bot"]
    assert agents["degrade"] == {"mode": "model", "model": "small-1"}
    titles = list(Alert.objects.filter(kind="budget.exhausted").values_list("title", flat=True))
    assert any("end user heavy" in title for title in titles)
    assert any("agent support-bot" in title for title in titles)
    assert not any("light" in title for title in titles)


def test_window_roll__state_resets_and_runtimes_are_told(
    tenant: Tenant, agent: Agent, token
) -> None:  # type: ignore[no-untyped-def]
    roomy_hour(tenant)  # the record (this second) and "now" below in one hour window
    budget = make_daily(tenant, window="hour", limits={"requests": 1}, action="block")
    records_ingest(token=token, records=[record()])
    environment = production(tenant)
    _, end = window_bounds("hour", datetime.now(UTC), tenant.time_zone)
    assert budgets_roll() == 0  # the window has not ended
    revision = Environment.objects.get(pk=environment.pk).revision
    later = end + timedelta(seconds=1)
    assert budgets_roll(now=later) == 1
    assert budgets_roll(now=later) == 0  # once
    assert Environment.objects.get(pk=environment.pk).revision == revision + 1
    assert AuditEvent.objects.filter(action="budget.window_reset").count() == 1
    [document] = budgets_for_snapshot(
        tenant_id=tenant.pk, environment_id=environment.pk, agent_id=None, now=later
    )
    assert document["state"] == "ok"
    assert document["window_start"] == end.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert budget_status(budget, now=later).consumed["requests"] == 0


def test_tenant_midnight__late_evening_utc_counts_in_the_tenants_next_day(
    tenant: Tenant, agent: Agent
) -> None:
    tenant.time_zone = "Asia/Tokyo"  # UTC+9: 20:00 UTC is 05:00 the next day
    tenant.save()
    budget = make_daily(tenant)
    consumption_apply(
        tenant_id=tenant.pk,
        environment_id=production(tenant).pk,
        usage=[
            [agent.pk, "", "2026-12-04T14:59:00+00:00", "1", 0, 1, 0],  # 23:59 JST on the 4th
            [agent.pk, "", "2026-12-04T15:00:00+00:00", "2", 0, 1, 0],  # 00:00 JST on the 5th
        ],
        now=datetime(2026, 12, 4, 20, tzinfo=UTC),
    )
    rows = dict(BudgetUsage.objects.filter(budget=budget).values_list("window_start", "cost_usd"))
    assert rows == {
        datetime(2026, 12, 3, 15, tzinfo=UTC): Decimal(1),
        datetime(2026, 12, 4, 15, tzinfo=UTC): Decimal(2),
    }


def test_created_mid_window__counts_what_was_already_spent(
    tenant: Tenant, agent: Agent, token
) -> None:  # type: ignore[no-untyped-def]
    records_ingest(token=token, records=[record(end_user_hash="u-9") for _ in range(4)])  # $1.00
    budget = make_daily(tenant, limits={"cost_usd": "1.50"})
    users = make_daily(
        tenant, name="users", scope="end_user", agent=agent, limits={"requests": 100}
    )
    assert usage_of(budget).cost_usd == Decimal("1.00")
    assert usage_of(users, "u-9").requests == 4
    # already past 50%: that alert at once, and only once when more arrives
    assert Alert.objects.filter(kind="budget.threshold").count() == 1
    records_ingest(token=token, records=[record()])
    assert usage_of(budget).cost_usd == Decimal("1.25")
    assert Alert.objects.filter(kind="budget.threshold").count() == 2  # 80%


@pytest.mark.parametrize("scope", ["tenant", "end_user"])
def test_created_mid_window__a_record_dated_ahead_counts_as_if_it_came_after(
    tenant: Tenant, agent: Agent, token, scope: str
) -> None:  # type: ignore[no-untyped-def]
    # Ingest accepts records dated up to TELEMETRY_MAX_FUTURE_S ahead (clock skew) and counts
    # each in the window of its own minute; the count made at the budget's creation must agree.
    roomy_hour(tenant)  # 15 minutes either side of now: 4 minutes ahead is still this hour
    ahead = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    records_ingest(token=token, records=[record(started_at=ahead, end_user_hash="u-9")])
    scoped = {"scope": scope, "agent": agent} if scope == "end_user" else {"scope": scope}
    before = make_daily(tenant, window="hour", limits={"requests": 9}, **scoped)
    records_ingest(token=token, records=[record(started_at=ahead, end_user_hash="u-9")])
    subject = "u-9" if scope == "end_user" else ""
    assert usage_of(before, subject).requests == 2  # the one before it and the one after
    after = make_daily(tenant, name="later", window="hour", limits={"requests": 9}, **scoped)
    assert usage_of(after, subject).requests == 2


def test_changed_mid_window__lower_limit_alerts_new_scope_recounts(
    tenant: Tenant, agent: Agent, token
) -> None:  # type: ignore[no-untyped-def]
    AgentFactory(tenant=tenant, slug="refund-agent", name="Refund agent")
    budget = make_daily(tenant, limits={"cost_usd": "100"})
    records_ingest(token=token, records=[record(), record(agent="refund-agent")])
    assert Alert.objects.count() == 0
    data = {
        **budget.snapshot(),
        "agent": None,
        "environment": None,
        "limits": {"cost_usd": "0.50"},
        "action": "block",
    }
    budget = budget_update(actor=ACTOR, budget=budget, data=data, expected_version=1)
    assert Alert.objects.filter(kind="budget.exhausted").count() == 1
    assert usage_of(budget).cost_usd == Decimal("0.50")
    data = {**data, "scope": "agent", "agent": agent, "limits": {"cost_usd": "0.50"}}
    budget = budget_update(actor=ACTOR, budget=budget, data=data, expected_version=2)
    assert usage_of(budget).cost_usd == Decimal("0.25")  # recounted for the one agent
    assert AuditEvent.objects.filter(action="budget.changed").count() == 2


def test_alert_only_budget__never_exhausts_runtimes(tenant: Tenant, agent: Agent, token) -> None:  # type: ignore[no-untyped-def]
    make_daily(tenant, limits={"requests": 1})
    environment = production(tenant)
    records_ingest(token=token, records=[record()])
    revision = Environment.objects.get(pk=environment.pk).revision
    records_ingest(token=token, records=[record()])
    assert Environment.objects.get(pk=environment.pk).revision == revision
    assert Alert.objects.filter(kind="budget.exhausted").count() == 1
