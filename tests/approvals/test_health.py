"""Queue health's numbers (``selectors.queue_health``) at the edges of its hour buckets: a
request counts as waiting at the end of every hour it was open, not before it opened and not
from the moment it was decided."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.approvals.models import ApprovalQueue, ApprovalRequest, Status
from apps.approvals.selectors import queue_health
from apps.approvals.services import approval_open
from apps.tenancy.models import Tenant

from .conftest import body

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 5, 10, 30, tzinfo=UTC)  # 4 hour buckets: 07:00, 08:00, 09:00, 10:00


def at(hour: int, minute: int = 0) -> datetime:
    return NOW.replace(hour=hour, minute=minute)


def test_queue_health__depth_and_arrivals_at_the_bucket_edges(
    tenant: Tenant, agent, refunds: ApprovalQueue, approver
) -> None:  # type: ignore[no-untyped-def]
    # opened before the period, still waiting: waiting at the end of every hour
    first = approval_open(
        tenant_id=tenant.pk,
        environment_id=tenant.environments.get(slug="production").pk,
        token_id=None,
        token_agent_id=None,
        token_label="test",
        body=body(),
        now=at(6),
    ).request
    rows = [
        # (created, decided, status)
        (at(7, 30), at(9), Status.APPROVED),  # waiting at 08:00 and 09:00 (decided at 09:00)
        (at(8), at(8, 59), Status.REJECTED),  # opened and decided within the 08:00 hour
        (at(5), at(7, 10), Status.EXPIRED),  # opened before, gone before 08:00
        (at(10, 15), None, Status.PENDING),  # waiting at 11:00 only
        (at(3), at(6), Status.APPROVED),  # before the period entirely
    ]
    ApprovalRequest.objects.bulk_create(
        ApprovalRequest(
            tenant=first.tenant,
            environment=first.environment,
            agent=first.agent,
            queue=first.queue,
            idempotency_key=f"k{index}",
            tool="issue_refund",
            arguments={},
            arguments_sha256="a" * 64,
            risk="critical",
            session_id=f"s{index}",
            status=status,
            created_at=created,
            expires_at=created + timedelta(hours=4),
            decided_at=decided,
        )
        for index, (created, decided, status) in enumerate(rows)
    )

    health = queue_health(approver, hours=4, now=NOW)

    assert health.hours == [at(7), at(8), at(9), at(10)]
    assert health.depth == [2, 2, 1, 2]
    assert health.opened == [1, 1, 0, 1]
    assert health.expired == [1, 0, 0, 0]
    assert health.waiting == 2
