"""Demo budgets (idempotent): what a newcomer sees on the Budgets page while the simulated fleet
of ``make run`` spends — a tenant-wide daily budget that only alerts, and an hourly budget of
support-bot that would block (generous: the demo's traffic should not stop)."""

from __future__ import annotations

from typing import Any

from apps.audit.services import SystemActor
from apps.tenancy.models import Agent, Tenant

from .models import Budget
from .services import budget_create

ACTOR = SystemActor("system:seed_demo")


def seed(tenant: Tenant) -> list[str]:
    done = []
    support = Agent.objects.filter(tenant=tenant, slug="support-bot").first()
    wanted: list[dict[str, Any]] = [
        {
            "name": "acme daily spend",
            "scope": "tenant",
            "window": "day",
            "limits": {"cost_usd": "25"},
            "action": "alert",
            "description": "Tell us when a day's spending runs high.",
        }
    ]
    if support is not None:
        wanted.append(
            {
                "name": "support-bot hourly",
                "scope": "agent",
                "agent": support,
                "window": "hour",
                "limits": {"cost_usd": "10", "tool_calls": 20000},
                "action": "block",
                "description": "A runaway loop stops here.",
            }
        )
    for data in wanted:
        if Budget.objects.filter(tenant=tenant, name=data["name"]).exists():
            continue
        budget_create(actor=ACTOR, tenant=tenant, data=data, reason="demo data")
        done.append(f"budget {data['name']} created")
    return done
