"""The one row-lock spelling: FOR NO KEY UPDATE of the row alone, joined rows not locked."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from apps.accounts.runtime_tokens import runtime_token_create, runtime_token_lock
from apps.audit.services import SystemActor
from apps.tenancy.models import Environment, Tenant
from apps.tenancy.services import agent_lock, environment_lock, tenant_lock

from ..factories import AgentFactory
from ..races import postgresql_only


def _lock_sql(fn, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        fn(**kwargs)
    [query] = [q["sql"] for q in queries.captured_queries if "FOR" in q["sql"]]
    return str(query)


def test_lock_functions__postgresql__no_key_update_of_the_row_only(tenant: Tenant) -> None:
    postgresql_only()
    environment = tenant.environments.get(slug="production")
    agent = AgentFactory(tenant=tenant)
    token, _ = runtime_token_create(
        actor=SystemActor("test"), tenant=tenant, environment=environment, name="fleet"
    )
    cases = [
        (tenant_lock, {"tenant_id": tenant.pk}, "tenancy_tenant"),
        (agent_lock, {"agent_id": agent.pk}, "tenancy_agent"),
        (environment_lock, {"environment_id": environment.pk}, "tenancy_environment"),
        (runtime_token_lock, {"token_id": token.pk}, "accounts_runtimetoken"),
    ]
    for fn, kwargs, table in cases:
        assert _lock_sql(fn, **kwargs).endswith(f'FOR NO KEY UPDATE OF "{table}"')


def test_environment_lock__returns_it_re_read_with_its_tenant(tenant: Tenant) -> None:
    environment = tenant.environments.get(slug="production")
    Environment.objects.filter(pk=environment.pk).update(name="Prod")

    with transaction.atomic():
        locked = environment_lock(environment_id=environment.pk)

    assert locked.name == "Prod" and locked.tenant.slug == tenant.slug


@pytest.mark.django_db(transaction=True)
def test_lock_row__outside_a_transaction__refused(tenant: Tenant) -> None:
    with pytest.raises(TransactionManagementError, match="outside of a transaction"):
        tenant_lock(tenant_id=tenant.pk)
