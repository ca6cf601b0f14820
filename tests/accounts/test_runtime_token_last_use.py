"""A runtime token's last use is recorded coarsely: at most once per LAST_USED_RESOLUTION, and
a request inside it costs no write (a fleet shares one token; decision 0021)."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import (
    LAST_USED_RESOLUTION,
    runtime_token_authenticate,
    runtime_token_create,
)
from apps.audit.services import SystemActor
from apps.tenancy.models import Tenant


def _updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]


def test_authenticate__last_use__written_once_per_resolution(tenant: Tenant) -> None:
    production = tenant.environments.get(slug="production")
    token, raw = runtime_token_create(
        actor=SystemActor("test"), tenant=tenant, environment=production, name="fleet"
    )
    assert token.last_used_at is None

    with CaptureQueriesContext(connection) as first:
        assert runtime_token_authenticate(raw) is not None
    token.refresh_from_db()
    used = token.last_used_at
    assert used is not None and len(_updates(first)) == 1

    with CaptureQueriesContext(connection) as again:
        assert runtime_token_authenticate(raw) is not None
    token.refresh_from_db()
    assert token.last_used_at == used and _updates(again) == []

    RuntimeToken.objects.filter(pk=token.pk).update(
        last_used_at=used - LAST_USED_RESOLUTION - timedelta(seconds=1)
    )
    assert runtime_token_authenticate(raw) is not None
    token.refresh_from_db()
    assert token.last_used_at is not None and token.last_used_at > used - LAST_USED_RESOLUTION
