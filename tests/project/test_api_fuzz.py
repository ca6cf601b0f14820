"""schemathesis over the OpenAPI document (issue 9, the nets): every operation the schema
describes, called as an authenticated Admin with generated input, answers no 5xx and nothing
that violates its own schema. The example count is bounded so the run stays short.

The schema is drf-spectacular's, generated in process; requests go to the Django WSGI
application in process, on the test database (rolled back after each operation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.accounts.roles import Role
from apps.accounts.services import api_token_rotate
from apps.tenancy.models import Tenant
from tests.factories import AgentFactory, make_user

pytestmark = pytest.mark.django_db

SCHEMA = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}

# Operations whose fault lies outside the input guards, each with the reason (reported to the
# owner). Not strict: once fixed they show as XPASS and the entry can go.
KNOWN: dict[str, str] = {
    "GET /api/v1/audit-events/": "audit (h6): AuditEventOutput.tenant_slug is null for events "
    "without a tenant, but the schema says string",
    "GET /api/v1/audit-events/{id}/": "audit (h6): AuditEventOutput.tenant_slug is null for "
    "events without a tenant, but the schema says string",
    "GET /api/v1/me/": 'accounts (h5): a user without an email answers email "", which the '
    'schema calls format "email"',
    "GET /api/v1/users/": 'accounts (h5): email "" violates the schema\'s format "email"',
    "POST /api/v1/users/": 'accounts (h5): email "" violates the schema\'s format "email"',
    "GET /api/v1/users/{id}/": 'accounts (h5): email "" violates the schema\'s format "email"',
    "PATCH /api/v1/users/{id}/": 'accounts (h5): email "" violates the schema\'s format "email"',
}

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def _keep_test_connection() -> Iterator[None]:
    # Django's own test client does this too: a request's end must not close the connection
    # that holds the test's transaction.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def admin_headers(tenant: Tenant, _keep_test_connection: None) -> dict[str, str]:
    AgentFactory(tenant=tenant, slug="support-bot")
    admin = make_user(Role.ADMIN, username="fuzz-admin")
    return {"Authorization": f"Token {api_token_rotate(actor=admin, user=admin)}"}


@pytest.mark.parametrize(
    "label",
    [
        pytest.param(label, marks=pytest.mark.xfail(reason=KNOWN[label], strict=False))
        if label in KNOWN
        else label
        for label in sorted(OPERATIONS)
    ],
)
def test_api__generated_requests__no_server_error_and_schema_conformant(
    label: str, admin_headers: dict[str, str]
) -> None:
    app = get_wsgi_application()

    @given(case=OPERATIONS[label].as_strategy())
    @settings(
        max_examples=4,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        case.call_and_validate(app=app, headers=admin_headers, checks=CHECKS)

    call()
