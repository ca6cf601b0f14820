"""The lock order every change keeps (``apps.tenancy.services.environment_revisions_bump``):
tenant, environments by ascending id, agent, and the audit chain's lock last. ``audit_record``
takes a transaction-wide advisory lock on the chain; a change that audits and then locks an
environment row deadlocks with one that locks the row and then audits (an agent archive, a
kill switch), and PostgreSQL aborts one of them: a 500, or consumption lost.

Each change that bumps several environments, or bumps outside its first lock, runs here with
the two locks watched: an environment locked or bumped after the chain's lock in the same
transaction is a violation. (A change that locks its one environment first, as flags,
deployments and rollouts do, may bump it after auditing: the row is already its own.) Real commits
(``transaction=True``): the budgets' consumption runs after the ingestion commits, as in
production."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit import services as audit
from apps.audit.services import SystemActor
from apps.budgets.models import Budget
from apps.budgets.selectors import budget_definition
from apps.budgets.services import budget_create, budget_delete, budget_update, budgets_roll
from apps.budgets.windows import window_bounds
from apps.flags.services import kill_switch_engage, kill_switch_release
from apps.telemetry.services import records_ingest
from apps.tenancy import services as tenancy
from apps.tenancy.models import Agent, Tenant

from ..budgets.conftest import roomy_hour
from ..budgets.test_counting import record
from ..factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = SystemActor("test")


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The violations seen while the test runs: environment locks or bumps taken after the
    audit chain's lock, in the same transaction."""
    chain_held = {"now": False}
    violations: list[str] = []
    lock_chain, lock, bump = (
        audit._lock_chain,
        tenancy.environment_lock,
        (tenancy.environment_revision_bump),
    )

    def watched_chain() -> None:
        lock_chain()
        if not chain_held["now"]:
            chain_held["now"] = True
            transaction.on_commit(lambda: chain_held.update(now=False))

    def watched_lock(*, environment_id: int) -> Any:
        if chain_held["now"]:
            violations.append(f"environment {environment_id} locked after the chain")
        return lock(environment_id=environment_id)

    def watched_bump(*, environment_id: int) -> int:
        if chain_held["now"]:
            violations.append(f"environment {environment_id} bumped after the chain")
        return bump(environment_id=environment_id)

    monkeypatch.setattr(audit, "_lock_chain", watched_chain)
    monkeypatch.setattr(tenancy, "environment_lock", watched_lock)
    monkeypatch.setattr(tenancy, "environment_revision_bump", watched_bump)
    yield violations


def _spend(tenant: Tenant, agent: Agent, cost: str) -> None:
    token, _ = runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        name=f"fleet-{uuid.uuid4().hex[:6]}",
    )
    records_ingest(token=token, records=[record(agent=agent.slug, cost_usd=cost)])


def _budget(tenant: Tenant, **fields: Any) -> Budget:
    data: dict[str, Any] = {
        "name": f"hourly {uuid.uuid4().hex[:6]}",
        "scope": "tenant",
        "window": "hour",
        "limits": {"cost_usd": "1"},
        "action": "block",
        "thresholds": [50, 80],
    }
    data.update(fields)
    return budget_create(actor=ACTOR, tenant=tenant, data=data)


def _definition(budget: Budget, **fields: Any) -> dict[str, Any]:
    return {**budget_definition(budget), **fields}


def _create_at_the_limit(tenant: Tenant, agent: Agent) -> None:
    _spend(tenant, agent, "2")
    _budget(tenant)  # counted from telemetry at creation: exhausted at once


def _consumption_exhausts(tenant: Tenant, agent: Agent) -> None:
    _budget(tenant)
    _spend(tenant, agent, "2")


def _update_lowers_the_limit(tenant: Tenant, agent: Agent) -> None:
    budget = _budget(tenant, limits={"cost_usd": "10"})
    _spend(tenant, agent, "2")
    budget_update(actor=ACTOR, budget=budget, data=_definition(budget, limits={"cost_usd": "1"}))


def _update_recounts(tenant: Tenant, agent: Agent) -> None:
    budget = _budget(tenant, limits={"cost_usd": "10"})
    _spend(tenant, agent, "2")
    budget_update(
        actor=ACTOR, budget=budget, data=_definition(budget, window="day", limits={"cost_usd": "1"})
    )


def _delete(tenant: Tenant, agent: Agent) -> None:
    budget_delete(actor=ACTOR, budget=_budget(tenant))


def _window_roll(tenant: Tenant, agent: Agent) -> None:
    _consumption_exhausts(tenant, agent)
    _, end = window_bounds("hour", datetime.now(UTC), tenant.time_zone)
    assert budgets_roll(now=end + timedelta(seconds=1)) == 1


def _kill_switch(tenant: Tenant, agent: Agent) -> None:
    switch = kill_switch_engage(
        actor=ACTOR,
        kind="tool_disabled",
        scope="tenant",
        tenant=tenant,
        tool_pattern="x",
        reason="r",
    )
    kill_switch_release(actor=ACTOR, switch=switch, reason="done")


def _agent_archive_and_restore(tenant: Tenant, agent: Agent) -> None:
    tenancy.agent_archive(actor=ACTOR, agent=agent, reason="retired")
    tenancy.agent_restore(actor=ACTOR, agent=agent, reason="back")


def _environment_restore(tenant: Tenant, agent: Agent) -> None:
    staging = tenant.environments.get(slug="staging")
    tenancy.environment_archive(actor=ACTOR, environment=staging, reason="r")
    tenancy.environment_restore(actor=ACTOR, environment=staging, reason="back")


CHANGES: dict[str, Callable[[Tenant, Agent], None]] = {
    "budget created at its limit": _create_at_the_limit,
    "consumption exhausts a budget": _consumption_exhausts,
    "budget limit lowered below what is used": _update_lowers_the_limit,
    "budget window changed (recount)": _update_recounts,
    "budget deleted": _delete,
    "budget window rolled": _window_roll,
    "kill switch engaged and released": _kill_switch,
    "agent archived and restored": _agent_archive_and_restore,
    "environment archived and restored": _environment_restore,
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_change__environments_locked_before_the_audit_chain(
    tenant: Tenant, watched: list[str], change: str
) -> None:
    roomy_hour(tenant)
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    CHANGES[change](tenant, agent)
    assert watched == []
