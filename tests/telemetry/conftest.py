from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.tenancy.models import Agent, Tenant
from tests.factories import AgentFactory

ACTOR = SystemActor("telemetry-tests")


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


def now_utc() -> datetime:
    return datetime.now(UTC)


def record(**fields: Any) -> dict[str, Any]:
    """A valid request record (JSON), with ``fields`` replacing the defaults."""
    data: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "agent": "support-bot",
        "session_id": "s-1",
        "version_digest": "a" * 64,
        "variant": "stable",
        "started_at": (now_utc() - timedelta(seconds=30)).isoformat(),
        "latency_ms": 120,
        "steps": 3,
        "tool_calls": 2,
        "tool_failures": 0,
        "tokens_in": 500,
        "tokens_out": 80,
        "cost_usd": "0.0125",
        "model": "gpt-x",
        "outcome": "success",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    data.update(fields)
    return data
