"""Demo flags for the `acme` tenant (called by ``./manage.py seed_demo``). Idempotent."""

from __future__ import annotations

from typing import Any

from apps.audit.services import SystemActor
from apps.tenancy.models import Tenant

from .models import Flag
from .services import flag_create

ACTOR = SystemActor("system:seed_demo")

DEMO_FLAGS: list[dict[str, Any]] = [
    {
        "name": "support-bot.new-refund-flow",
        "description": (
            "The reworked refund conversation of the support bot, rolled out to 10% of users."
        ),
        "type": "release",
        "enabled": True,
        "strategies": [
            {
                "name": "flexibleRollout",
                "parameters": {
                    "rollout": "10",
                    "stickiness": "default",
                    "groupId": "support-bot.new-refund-flow",
                },
            }
        ],
    },
    {
        "name": "support-bot.order-lookup",
        "description": (
            "Operational switch: let the support bot look orders up in the order system."
        ),
        "type": "operational",
        "enabled": True,
        "strategies": [{"name": "default"}],
    },
    {
        "name": "support-bot.tone",
        "description": (
            "Which answer tone the support bot uses; internal users always get 'concise'."
        ),
        "type": "experiment",
        "enabled": True,
        "strategies": [{"name": "default"}],
        "variants": [
            {
                "name": "friendly",
                "weightType": "variable",
                "stickiness": "default",
                "payload": {"type": "string", "value": "friendly"},
            },
            {
                "name": "concise",
                "weightType": "variable",
                "stickiness": "default",
                "payload": {"type": "string", "value": "concise"},
                "overrides": [{"contextName": "userId", "values": ["internal-qa"]}],
            },
        ],
    },
]


def seed(tenant: Tenant) -> list[str]:
    """Create the demo flags in every environment of ``tenant`` that lacks them; one line of
    output per flag created."""
    created: list[str] = []
    for environment in tenant.environments.filter(archived_at__isnull=True).order_by("position"):
        for spec in DEMO_FLAGS:
            if Flag.objects.filter(environment=environment, name=spec["name"]).exists():
                continue
            flag = flag_create(actor=ACTOR, environment=environment, reason="demo data", **spec)
            created.append(f"created flag {flag.name} in {environment.slug}")
    return created
