from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.budgets.models import Budget
from apps.budgets.services import budget_create
from apps.tenancy.models import Agent, Tenant
from tests.factories import AgentFactory

ACTOR = SystemActor("budget-tests")


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


@pytest.fixture
def token_and_raw(tenant: Tenant, agent: Agent) -> tuple[RuntimeToken, str]:
    return runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        name="fleet",
    )


@pytest.fixture
def token(token_and_raw: tuple[RuntimeToken, str]) -> RuntimeToken:
    return token_and_raw[0]


def make_budget(tenant: Tenant, **fields: Any) -> Budget:
    """A budget through the service, defaults: the whole tenant, a day, $5, alert only."""
    data: dict[str, Any] = {
        "name": "daily",
        "scope": "tenant",
        "window": "day",
        "limits": {"cost_usd": "5"},
        "action": "alert",
    }
    data.update(fields)
    return budget_create(actor=ACTOR, tenant=tenant, data=data)
