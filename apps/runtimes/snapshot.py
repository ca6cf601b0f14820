"""The signed config snapshot a runtime fetches: composed from the apps below, serialised
canonically, digested and signed once per revision and scope (the fast path caches it)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.audit.hashing import canonical_json
from apps.tenancy.models import Environment
from controlplane.fastpath import Route, TokenScope, register

SCHEMA = "controlplane.snapshot/v1"
CONFIG_PATH = "/api/runtime/v1/config"


def snapshot_content(*, environment: Environment, agent_id: int | None) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tenant": environment.tenant.slug,
        "environment": environment.slug,
        "revision": environment.revision,
        "agents": {},
        "flags": [],
        "kill_switches": [],
        "budgets": [],
    }


def build_config(scope: TokenScope, variant: str) -> tuple[int, bytes]:
    with transaction.atomic():
        environment = Environment.objects.select_related("tenant").get(pk=scope.environment_id)
        content = snapshot_content(environment=environment, agent_id=scope.agent_id)
    return environment.revision, canonical_json({"snapshot": content})


def register_routes() -> None:
    register(Route(path=CONFIG_PATH, kind="runtime-config", build=build_config, max_wait_s=60))
