from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.runtime_tokens import runtime_token_create, runtime_token_revoke
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.runtimes.models import RevisionLog, RuntimeInstance
from apps.runtimes.selectors import convergence_for, propagation_of, runtime_rows
from apps.tenancy.models import Environment, Tenant
from apps.tenancy.services import environment_revision_bump

pytestmark = pytest.mark.django_db
ACTOR = SystemActor("test")


@pytest.fixture
def production(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="production")


@pytest.fixture
def token(tenant: Tenant, production: Environment) -> str:
    return runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="fleet")[1]


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=token)
    return client


def _beat(token: str, **body):  # type: ignore[no-untyped-def]
    return _client(token).post(
        "/api/runtime/v1/heartbeat", {"instance_id": "pod-1", **body}, format="json"
    )


def test_heartbeat__first_ack__registers_instance_in_sync(
    token: str, production: Environment
) -> None:
    response = _beat(
        token,
        name="pod one",
        status="ack",
        revision=1,
        digests={"support-bot": "abc"},
        labels={"region": "eu"},
        library_version="0.1.0",
    )
    assert response.status_code == 200
    assert response.json() == {"revision": 1}
    instance = RuntimeInstance.objects.get()
    assert (instance.environment, instance.applied_revision, instance.digests) == (
        production,
        1,
        {"support-bot": "abc"},
    )
    assert runtime_rows(environment=production)[0].status.label == "in sync"
    assert AuditEvent.objects.filter(action="runtime.registered").count() == 1


def test_heartbeat__revision_moves_on__runtime_is_behind_until_ack(
    token: str, production: Environment
) -> None:
    _beat(token, status="ack", revision=1)
    with transaction.atomic():
        environment_revision_bump(environment_id=production.pk)
        environment_revision_bump(environment_id=production.pk)
    production.refresh_from_db()
    status = runtime_rows(environment=production)[0].status
    assert (status.label, status.behind_by) == ("behind", 2)
    assert convergence_for(environments=[production])[0].on_revision == 0

    _beat(token, status="ack", revision=3)

    assert runtime_rows(environment=production)[0].status.label == "in sync"
    c = convergence_for(environments=[production])[0]
    assert (c.on_revision, c.live, c.converged) == (1, 1, True)


def test_heartbeat__nack__shows_error_and_is_audited_once(
    token: str, production: Environment
) -> None:
    _beat(token, status="ack", revision=1)
    with transaction.atomic():
        environment_revision_bump(environment_id=production.pk)
    production.refresh_from_db()
    _beat(token, status="nack", revision=2, error="signature does not verify")
    _beat(token, status="nack", revision=2, error="signature does not verify")

    status = runtime_rows(environment=production)[0].status
    assert status.label == "NACK"
    assert "signature does not verify" in status.detail
    assert AuditEvent.objects.filter(action="runtime.nacked").count() == 1
    assert convergence_for(environments=[production])[0].nack == 1


def test_heartbeat__silent_runtime__becomes_stale(token: str, production: Environment) -> None:
    _beat(token, status="ack", revision=1)
    RuntimeInstance.objects.update(last_seen_at=timezone.now() - timedelta(minutes=5))
    assert runtime_rows(environment=production)[0].status.label == "stale"
    assert convergence_for(environments=[production])[0].live == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"instance_id": ""}, "instance_id"),
        ({"instance_id": "bad id with spaces"}, "instance_id"),
        ({"instance_id": "p", "status": "ack"}, "revision"),
        ({"instance_id": "p", "status": "nack", "revision": 2}, "error"),
        ({"instance_id": "p", "status": "maybe", "revision": 2}, "status"),
        ({"instance_id": "p", "push_url": "not a url"}, "push_url"),
    ],
)
def test_heartbeat__bad_input__400_and_nothing_stored(token: str, body: dict, field: str) -> None:  # type: ignore[type-arg]
    response = _client(token).post("/api/runtime/v1/heartbeat", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert RuntimeInstance.objects.count() == 0


def test_heartbeat__revoked_or_expired_or_missing_token__401(
    token: str, tenant: Tenant, production: Environment
) -> None:
    from apps.accounts.models import RuntimeToken

    expired, raw_expired = runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=production,
        name="old",
        expires_at=timezone.now() + timedelta(seconds=30),
    )
    RuntimeToken.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    runtime_token_revoke(
        actor=ACTOR, token=RuntimeToken.objects.get(name="fleet"), reason="rotated"
    )

    assert _beat(token).status_code == 401
    assert _beat(raw_expired).status_code == 401
    assert APIClient().post(
        "/api/runtime/v1/heartbeat", {"instance_id": "x"}, format="json"
    ).status_code in (401, 403)
    assert RuntimeInstance.objects.count() == 0


def test_heartbeat__user_session__does_not_count_as_runtime(operator) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_login(operator)
    assert client.post(
        "/api/runtime/v1/heartbeat", {"instance_id": "x"}, format="json"
    ).status_code in (401, 403)


def test_runtime_token__never_grants_operator_api(token: str) -> None:
    assert _client(token).get("/api/v1/tenants/").status_code in (401, 403)


@override_settings(RUNTIME_STALE_AFTER_S=30)
def test_propagation__counts_runtimes_on_revision_and_time_to_all(
    tenant: Tenant, production: Environment, token: str, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    for pod in ("a", "b", "c"):
        _client(token).post(
            "/api/runtime/v1/heartbeat",
            {"instance_id": pod, "status": "ack", "revision": 1},
            format="json",
        )
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        revision = environment_revision_bump(environment_id=production.pk)
    production.refresh_from_db()
    assert RevisionLog.objects.filter(environment=production, revision=revision).exists()

    _client(token).post(
        "/api/runtime/v1/heartbeat",
        {"instance_id": "a", "status": "ack", "revision": revision},
        format="json",
    )
    p = propagation_of(environment=production, revision=revision)
    assert (p.acknowledged, p.live, p.complete, p.took_s) == (1, 3, False, None)

    for pod in ("b", "c"):
        _client(token).post(
            "/api/runtime/v1/heartbeat",
            {"instance_id": pod, "status": "ack", "revision": revision},
            format="json",
        )
    p = propagation_of(environment=production, revision=revision)
    assert (p.acknowledged, p.live, p.complete) == (3, 3, True)
    assert p.took_s is not None and p.took_s >= 0


# Optional fields sent as null mean "none" (a runtime in a language where absent is null):
# the heartbeat, and the ack it carries, are not lost to them (issue 8, kind 2).
@pytest.mark.parametrize(
    "nulls",
    [
        {"name": None},
        {"labels": None},
        {"library_version": None},
        {"digests": None},
        {"error": None},
        {"push_url": None},
        {"name": None, "labels": None, "library_version": None, "digests": None, "error": None},
    ],
)
def test_heartbeat__optional_fields_null__ack_recorded_as_absent(
    token: str,
    production: Environment,
    nulls: dict,  # type: ignore[type-arg]
) -> None:
    response = _beat(token, status="ack", revision=1, **nulls)
    assert response.status_code == 200, response.content
    instance = RuntimeInstance.objects.get()
    assert instance.applied_revision == 1
    assert (instance.name, instance.labels, instance.digests) == ("", {}, {})


def test_heartbeat__nack_with_null_error__still_refused(token: str) -> None:
    response = _beat(token, status="nack", revision=1, error=None)
    assert response.status_code == 400 and "error" in response.json()["errors"]
    assert RuntimeInstance.objects.count() == 0
