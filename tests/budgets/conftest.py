"""What the budgets tests share: an agent with traffic, and budgets made through the service."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.budgets.models import Budget
from apps.budgets.services import budget_create
from apps.budgets.windows import window_bounds
from apps.telemetry.services import records_ingest
from apps.tenancy.models import Agent, Tenant

from ..factories import AgentFactory

ACTOR = SystemActor("test")


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


def make_budget(tenant: Tenant, **data: Any) -> Budget:
    """A budget of ``tenant`` through the service; ``data`` overrides a valid tenant-wide one."""
    definition: dict[str, Any] = {
        "name": "tenant hourly",
        "scope": "tenant",
        "window": "hour",
        "limits": {"cost_usd": "5.00"},
    }
    definition.update(data)
    return budget_create(actor=ACTOR, tenant=tenant, data=definition)


def roomy_hour(tenant: Tenant) -> None:
    """Give ``tenant`` the time zone whose current hour window is furthest from both ends
    (their hours start at :00, :30 and :15 UTC, so one always has 15 minutes either side):
    records of this minute, and whatever the product reads later in the test, stay in one
    hour window even when the test runs across the end of a UTC hour."""
    now = timezone.now()

    def margin(zone: str) -> timedelta:
        start, end = window_bounds("hour", now, zone)
        return min(now - start, end - now)

    tenant.time_zone = max(("UTC", "Asia/Kolkata", "Asia/Kathmandu"), key=margin)
    tenant.save(update_fields=["time_zone"])


def ingest(
    tenant: Tenant,
    agent: Agent,
    costs: list[str],
    *,
    environment: str = "production",
    end_user: str = "",
    model: str = "gpt-4o",
    tool_calls: int = 1,
    when: datetime | None = None,
    prefix: str = "r",
) -> None:
    """One request record per cost, a second apart, in the current minute (or ``when``)."""
    env = tenant.environments.get(slug=environment)
    token, _ = runtime_token_create(actor=ACTOR, tenant=tenant, environment=env, name=prefix)
    start = (when or timezone.now()).replace(second=0, microsecond=0)
    records = [
        {
            "request_id": f"{prefix}-{index}",
            "agent": agent.slug,
            "session_id": f"s-{index % 3}",
            "end_user_hash": end_user or f"user-{index % 2}",
            "variant": "stable",
            "started_at": (start + timedelta(seconds=index % 50)).isoformat(),
            "latency_ms": 100,
            "cost_usd": cost,
            "tokens_in": 10,
            "tokens_out": 5,
            "tool_calls": tool_calls,
            "model": model,
            "trace_id": f"trace-{index}",
            "outcome": "success",
        }
        for index, cost in enumerate(costs)
    ]
    result = records_ingest(token=token, records=records)
    assert not result.rejected, result.rejected


def total(costs: list[str]) -> Decimal:
    return sum((Decimal(c) for c in costs), Decimal(0))


@pytest.fixture
def token_and_raw(tenant: Tenant, agent: Agent) -> tuple[RuntimeToken, str]:
    """A runtime token of the tenant's production environment and its raw value."""
    return runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        name="fleet",
    )


@pytest.fixture
def token(token_and_raw: tuple[RuntimeToken, str]) -> RuntimeToken:
    return token_and_raw[0]


def make_daily(tenant: Tenant, **fields: Any) -> Budget:
    """A budget through the service, defaults: the whole tenant, a day, $5, alert only (a day:
    records a moment old stay in the current window but at midnight UTC)."""
    data: dict[str, Any] = {
        "name": "daily",
        "scope": "tenant",
        "window": "day",
        "limits": {"cost_usd": "5"},
        "action": "alert",
    }
    data.update(fields)
    return budget_create(actor=ACTOR, tenant=tenant, data=data)
