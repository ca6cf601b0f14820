"""What an audit event holds: actor, target, tenant, redacted before/after, request id."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from apps.accounts import services as accounts
from apps.audit.hashing import REDACTED
from apps.audit.models import AuditEvent
from apps.tenancy.models import Agent, Tenant

from ..conftest import api_as

pytestmark = pytest.mark.django_db

Record = Callable[..., AuditEvent]


def test_audit_record__secret_looking_keys__redacted_at_any_depth(record: Record) -> None:
    event = record(
        before={
            "name": "bot",
            "api_key": "sk-live-123",
            "webhook": {"secret": "whsec_1", "url": "https://x"},
        },
        after={
            "name": "bot",
            "Password": "hunter22",
            "tools": [{"name": "refund", "private_key": "pk"}],
            "access_token": "",
            "client_credentials": None,
        },
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.before == {
        "name": "bot",
        "api_key": REDACTED,
        "webhook": {"secret": REDACTED, "url": "https://x"},
    }
    assert stored.after == {
        "name": "bot",
        "Password": REDACTED,
        "tools": [{"name": "refund", "private_key": REDACTED}],
        "access_token": "",
        "client_credentials": None,
    }
    assert "sk-live-123" not in str(AuditEvent.objects.values().get(pk=event.pk))


def test_audit_record__api_token_rotation__token_never_stored(admin) -> None:  # type: ignore[no-untyped-def]
    key = accounts.api_token_rotate(actor=admin, user=admin)
    event = AuditEvent.objects.get(action="user.api_token_rotated")
    assert key not in str(AuditEvent.objects.values().get(pk=event.pk))
    assert event.after == {"api_access": True, "key_prefix": key[:11]}


def test_audit_record__model_target__type_id_and_label(record: Record, tenant: Tenant) -> None:
    agent = Agent.objects.create(tenant=tenant, slug="support-bot", name="Support bot")
    event = record(target=agent, tenant=tenant)
    assert (event.target_type, event.target_id, event.target_label) == (
        "tenancy.agent",
        str(agent.pk),
        "Support bot",
    )
    assert event.tenant_id == tenant.pk
    assert event.actor_id is None and event.actor_label == "system:test"


def test_audit_record__user_actor__id_and_username(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    response = api_as(operator).post(
        "/api/v1/agents/", {"tenant": tenant.pk, "slug": "bot", "name": "Bot"}, format="json"
    )
    assert response.status_code == 201
    event = AuditEvent.objects.get(action="agent.created")
    assert (event.actor_id, event.actor_label) == (operator.pk, "olivia-operator")


# --------------------------------------------------------------------------- request id


def test_request_id__x_request_id_header__lands_in_the_event_and_response(
    operator, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    response = api_as(operator).post(
        "/api/v1/agents/",
        {"tenant": tenant.pk, "slug": "bot", "name": "Bot"},
        format="json",
        HTTP_X_REQUEST_ID="req-2026.abc_123",
    )
    assert response.status_code == 201
    assert response["X-Request-ID"] == "req-2026.abc_123"
    assert AuditEvent.objects.get(action="agent.created").request_id == "req-2026.abc_123"


def test_request_id__no_header__generated_and_returned(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    response = api_as(operator).post(
        "/api/v1/agents/", {"tenant": tenant.pk, "slug": "bot", "name": "Bot"}, format="json"
    )
    event = AuditEvent.objects.get(action="agent.created")
    assert len(event.request_id) == 32
    assert response["X-Request-ID"] == event.request_id


@pytest.mark.parametrize("supplied", ["has spaces", "x" * 65, "<script>", "new\nline"])
def test_request_id__unsafe_header__replaced_by_a_generated_one(
    operator, tenant: Tenant, supplied: str
) -> None:  # type: ignore[no-untyped-def]
    api_as(operator).post(
        "/api/v1/agents/",
        {"tenant": tenant.pk, "slug": "bot", "name": "Bot"},
        format="json",
        HTTP_X_REQUEST_ID=supplied,
    )
    request_id = AuditEvent.objects.get(action="agent.created").request_id
    assert request_id != supplied
    assert len(request_id) == 32 and request_id.isalnum()


def test_request_id__two_requests__two_ids(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    client.post(
        "/api/v1/agents/", {"tenant": tenant.pk, "slug": "one", "name": "One"}, format="json"
    )
    client.post(
        "/api/v1/agents/", {"tenant": tenant.pk, "slug": "two", "name": "Two"}, format="json"
    )
    ids = set(
        AuditEvent.objects.filter(action="agent.created").values_list("request_id", flat=True)
    )
    assert len(ids) == 2
