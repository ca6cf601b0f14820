"""The telemetry reads the budget page draws from (apps/telemetry/consumption.py): per
minute, by model, session and end user, and cost outliers (over 10x the median and in the top
1%)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.telemetry.consumption import consumption_by, consumption_per_minute, cost_outliers
from apps.tenancy.models import Agent, Tenant

from .conftest import ingest

pytestmark = pytest.mark.django_db


def _span() -> dict[str, object]:
    now = timezone.now()
    return {"start": now - timedelta(hours=1), "end": now + timedelta(minutes=1)}


def test_consumption_per_minute__rollups_and_one_end_users_records(
    tenant: Tenant, agent: Agent
) -> None:
    ingest(tenant, agent, ["1.00", "2.00"], end_user="alice", prefix="a")
    ingest(tenant, agent, ["4.00"], end_user="bob", prefix="b")
    minutes = consumption_per_minute(tenant_id=tenant.pk, **_span())  # type: ignore[arg-type]
    assert sum((c.cost_usd for _, c in minutes), Decimal(0)) == Decimal("7.00")
    alice = consumption_per_minute(tenant_id=tenant.pk, end_user_hash="alice", **_span())  # type: ignore[arg-type]
    assert [(c.cost_usd, c.requests) for _, c in alice] == [(Decimal("3.00"), 2)]


def test_consumption_by__model_session_end_user__biggest_first(
    tenant: Tenant, agent: Agent
) -> None:
    ingest(tenant, agent, ["1.00"], model="gpt-4o-mini", end_user="alice", prefix="a")
    ingest(tenant, agent, ["3.00"], model="gpt-4o", end_user="bob", prefix="b")
    span = _span()
    models = consumption_by(tenant_id=tenant.pk, key="model", **span)  # type: ignore[arg-type]
    assert [(m, c.cost_usd) for m, c in models] == [
        ("gpt-4o", Decimal("3.00")),
        ("gpt-4o-mini", Decimal("1.00")),
    ]
    users = consumption_by(tenant_id=tenant.pk, key="end_user_hash", **span)  # type: ignore[arg-type]
    assert [u for u, _ in users] == ["bob", "alice"]
    other = consumption_by(tenant_id=tenant.pk, key="model", agent_id=agent.pk + 1000, **span)  # type: ignore[arg-type]
    assert other == []


def test_cost_outliers__far_above_the_median_and_in_the_top_share(
    tenant: Tenant, agent: Agent
) -> None:
    ingest(tenant, agent, ["0.01"] * 199 + ["0.50", "0.05"])
    median, outliers = cost_outliers(tenant_id=tenant.pk, **_span())  # type: ignore[arg-type]
    assert median == Decimal("0.01")
    # top 1% of 201 is 2 requests: 0.50 (50x) is an outlier, 0.05 (5x) is not far enough
    assert [(o.request_id, o.times, o.model, o.trace_id) for o in outliers] == [
        ("r-199", Decimal("50.0"), "gpt-4o", "trace-199")
    ]


def test_cost_outliers__no_records__none(tenant: Tenant) -> None:
    assert cost_outliers(tenant_id=tenant.pk, **_span()) == (None, [])  # type: ignore[arg-type]
