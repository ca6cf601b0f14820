from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.flags.models import Flag
from apps.flags.services import flag_create
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory

SYSTEM = SystemActor("test")


@pytest.fixture
def development(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="development")


@pytest.fixture
def production(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="production")


@pytest.fixture
def support_bot(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


def make_token(environment: Environment, agent: Agent | None = None) -> str:
    _, raw = runtime_token_create(
        actor=SYSTEM,
        tenant=environment.tenant,
        environment=environment,
        agent=agent,
        name=f"sdk {environment.slug}",
    )
    return raw


def make_flag(environment: Environment, name: str = "new-checkout", **kwargs: Any) -> Flag:
    kwargs.setdefault("enabled", True)
    kwargs.setdefault("strategies", [{"name": "default"}])
    if environment.is_production:
        kwargs.setdefault("reason", "test setup")
    return flag_create(actor=SYSTEM, environment=environment, name=name, **kwargs)


def revision_of(environment: Environment) -> int:
    return Environment.objects.values_list("revision", flat=True).get(pk=environment.pk)
