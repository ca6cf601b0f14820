"""Demo approval queues (idempotent): where the simulated refund-agent's ``issue_refund``
requests wait on the Approvals page of ``make run`` — a Refunds queue with a 10-minute SLA
that escalates to Finance leads after 30 minutes, and the tenant's default queue for anything
else. Admins decide in every queue, so the demo's admin can clear them."""

from __future__ import annotations

from typing import Any

from apps.audit.services import SystemActor
from apps.tenancy.models import Tenant

from .models import ApprovalQueue
from .services import queue_create, queue_default

ACTOR = SystemActor("system:seed_demo")


def seed(tenant: Tenant) -> list[str]:
    done = []
    leads = ApprovalQueue.objects.filter(tenant=tenant, name="Finance leads").first()
    if leads is None:
        leads = queue_create(
            actor=ACTOR,
            tenant=tenant,
            data={
                "name": "Finance leads",
                "description": "Refunds nobody in Refunds decided within 30 minutes.",
                "position": 900,
                "match_agents": [],
                "match_tools": ["issue_refund"],
                "match_risks": ["critical"],
                "timeout_s": 2 * 3600,
                "sla_s": 15 * 60,
            },
            reason="demo data",
        )
        done.append("approval queue Finance leads created")
    wanted: list[dict[str, Any]] = [
        {
            "name": "Refunds",
            "description": "Every refund the refund agent wants to issue.",
            "position": 10,
            "match_tools": ["issue_refund"],
            "timeout_s": 3600,
            "sla_s": 10 * 60,
            "escalate_after_s": 30 * 60,
            "escalate_to": leads,
            "max_open_per_session": 3,
        }
    ]
    for data in wanted:
        if ApprovalQueue.objects.filter(tenant=tenant, name=data["name"]).exists():
            continue
        queue_create(actor=ACTOR, tenant=tenant, data=data, reason="demo data")
        done.append(f"approval queue {data['name']} created")
    if not ApprovalQueue.objects.filter(tenant=tenant, is_default=True).exists():
        queue_default(tenant)
        done.append("approval queue Default created")
    return done
