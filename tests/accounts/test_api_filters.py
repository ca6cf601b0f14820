"""The runtime token list's query filter (``apps/accounts/api/filters.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.tenancy.models import Tenant

from ..conftest import api_as

pytestmark = pytest.mark.django_db

URL = "/api/v1/runtime-tokens/"


def test_runtime_tokens__by_environment(tenant: Tenant, admin: Any) -> None:
    development, production = (
        tenant.environments.get(slug=s) for s in ("development", "production")
    )
    for environment in (development, production):
        runtime_token_create(
            actor=SystemActor("test"),
            tenant=tenant,
            environment=environment,
            agent=None,
            name=f"sdk {environment.slug}",
        )
    client = api_as(admin)

    assert client.get(URL).json()["count"] == 2
    rows = client.get(URL, {"environment": production.pk}).json()["results"]
    assert [row["name"] for row in rows] == ["sdk production"]
    assert client.get(URL, {"environment": 999_999}).json()["count"] == 0


@pytest.mark.parametrize("value", ["prod", "1.5", "0", "9" * 30])
def test_runtime_tokens__bad_environment__400(admin: Any, value: str) -> None:
    response = api_as(admin).get(URL, {"environment": value})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["environment"]
