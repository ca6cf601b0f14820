"""One runtime token cannot poison or flood shared state through heartbeats (issue 9, item 6):
fields shaped and bounded, new instances rate-limited, churn audited in aggregate, requests
limited per token."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.api.throttling import RuntimeTokenRateThrottle
from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.runtimes.models import RuntimeInstance
from apps.tenancy.models import Environment, Tenant

pytestmark = pytest.mark.django_db
ACTOR = SystemActor("test")


@pytest.fixture
def production(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="production")


def _runtime(tenant: Tenant, production: Environment, name: str = "fleet") -> APIClient:
    _, raw = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name=name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=raw)
    return client


def _beat(client: APIClient, **body: Any) -> Any:
    return client.post("/api/runtime/v1/heartbeat", {"instance_id": "pod-1", **body}, format="json")


BREAKER = {"state": "open", "failures": 5}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"circuit_breakers": {f"tool-{i}": BREAKER for i in range(101)}}, "circuit_breakers"),
        ({"circuit_breakers": {"search": {"state": "melted", "failures": 1}}}, "circuit_breakers"),
        (
            {"circuit_breakers": {"search": {"state": "open", "failures": 2**63}}},
            "circuit_breakers",
        ),
        ({"circuit_breakers": {"search": {"state": "open", "failures": -1}}}, "circuit_breakers"),
        ({"circuit_breakers": {"search": "open"}}, "circuit_breakers"),
        ({"circuit_breakers": {"search": {"state": {"nested": [1, 2, 3]}}}}, "circuit_breakers"),
        ({"circuit_breakers": {"x" * 101: BREAKER}}, "circuit_breakers"),
        ({"circuit_breakers": {"se\u0000arch": BREAKER}}, "circuit_breakers"),
        ({"circuit_breakers": ["open"]}, "circuit_breakers"),
        ({"status": "ack", "revision": 2**63}, "revision"),
        ({"status": "ack", "revision": 10**30}, "revision"),
        ({"labels": {f"k{i}": "v" for i in range(51)}}, "labels"),
        ({"labels": {"re\u0000gion": "eu"}}, "labels"),
        ({"labels": {"region": "e\u0000u"}}, "labels"),
        ({"labels": {"region": "x" * 201}}, "labels"),
        ({"digests": {f"agent-{i}": "abc" for i in range(51)}}, "digests"),
        ({"digests": {"a\u0000": "abc"}}, "digests"),
        ({"name": "pod\u0000one"}, "name"),
        ({"library_version": "1" * 41}, "library_version"),
        ({"status": "nack", "revision": 2, "error": "x" * 4001}, "error"),
    ],
)
def test_heartbeat__field_out_of_shape_or_bounds__400_names_it_and_nothing_stored(
    tenant: Tenant, production: Environment, body: dict[str, Any], field: str
) -> None:
    response = _beat(_runtime(tenant, production), **body)
    assert response.status_code == 400, response.content
    # the field itself, or (NUL, refused by the request guard) a path inside it
    errors = response.json()["errors"]
    assert any(key == field or key.startswith((f"{field}[", f"{field}.")) for key in errors)
    assert RuntimeInstance.objects.count() == 0


def test_heartbeat__breakers_as_the_runtime_library_reports_them__stored(
    tenant: Tenant, production: Environment
) -> None:
    breakers = {
        # what a newer library may add beside the known fields is dropped, not stored
        "search_orders": {"state": "open", "failures": 5, "junk": "x" * 2_000_000},
        "refund": {"state": "half_open", "failures": 1},
        "lookup": {"state": "closed"},
    }
    response = _beat(
        _runtime(tenant, production), status="ack", revision=2**63 - 1, circuit_breakers=breakers
    )
    assert response.status_code == 200, response.content
    instance = RuntimeInstance.objects.get()
    assert instance.circuit_breakers["lookup"] == {"state": "closed", "failures": 0}
    assert instance.circuit_breakers["search_orders"] == {"state": "open", "failures": 5}
    assert instance.applied_revision == 2**63 - 1


def test_heartbeat__new_instances_beyond_the_minute_limit__429_retry_after(
    tenant: Tenant, production: Environment, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.RUNTIME_NEW_INSTANCES_PER_MINUTE = 3
    fleet = _runtime(tenant, production)
    other = _runtime(tenant, production, name="other fleet")

    statuses = [_beat(fleet, instance_id=f"pod-{i}").status_code for i in range(3)]
    refused = _beat(fleet, instance_id="pod-new")

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 61
    assert "new runtime instances" in refused.json()["detail"]
    assert not RuntimeInstance.objects.filter(instance_id="pod-new").exists()
    # known instances keep beating; another token has its own allowance
    assert _beat(fleet, instance_id="pod-0").status_code == 200
    assert _beat(other, instance_id="other-pod").status_code == 200


def test_heartbeat__instance_churn__audited_once_per_token_and_interval(
    tenant: Tenant, production: Environment
) -> None:
    fleet = _runtime(tenant, production)
    other = _runtime(tenant, production, name="other fleet")

    for i in range(25):
        assert _beat(fleet, instance_id=f"pod-{i}").status_code == 200
    assert _beat(other, instance_id="other-pod").status_code == 200

    assert RuntimeInstance.objects.count() == 26
    registered = AuditEvent.objects.filter(action="runtime.registered")
    assert registered.count() == 2  # the first of each token's burst


def test_runtime_endpoints__requests_beyond_the_token_limit__429_json_retry_after(
    tenant: Tenant, production: Environment, settings, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    settings.RUNTIME_TOKEN_REQUESTS_PER_MINUTE = 5
    # held still mid-window: a minute boundary must not open a fresh window mid-test
    monkeypatch.setattr(RuntimeTokenRateThrottle, "clock", staticmethod(lambda: 1_800_000_030.0))
    fleet = _runtime(tenant, production)
    other = _runtime(tenant, production, name="other fleet")

    statuses = [_beat(fleet).status_code for _ in range(5)]
    refused = _beat(fleet)
    register = fleet.post(
        "/api/client/register",
        {
            "appName": "a",
            "instanceId": "i",
            "strategies": [],
            "started": "2024-01-01T00:00:00Z",
            "interval": 10,
        },
        format="json",
    )

    assert statuses == [200] * 5
    assert refused.status_code == 429 and register.status_code == 429
    assert int(refused["Retry-After"]) == 30  # to the next window
    assert refused.json()["detail"] and refused.json()["errors"] == {}
    assert _beat(other).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_heartbeat__concurrent_new_instances__exactly_the_limit_registered(
    tenant: Tenant, production: Environment, settings
) -> None:  # type: ignore[no-untyped-def]
    """Eight first heartbeats at once against a limit of three: the token lock makes the
    count exact on PostgreSQL, so three are registered and five refused."""
    import threading

    from django.db import connection

    settings.RUNTIME_NEW_INSTANCES_PER_MINUTE = 3
    _, raw = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="f")
    start = threading.Barrier(8)
    statuses: list[int] = []

    def beat(i: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=raw)
        start.wait()
        try:
            statuses.append(_beat(client, instance_id=f"pod-{i}").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=beat, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [200] * 3 + [429] * 5
    assert RuntimeInstance.objects.count() == 3
