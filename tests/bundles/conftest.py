from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from django.db import connection
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.bundles.models import (
    BundleVersion,
    Evaluation,
    GateRequirement,
    PromotionGate,
    SigningKey,
)
from apps.tenancy.models import Agent, Tenant

from ..factories import AgentFactory

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (its triggers)"
)


@pytest.fixture(autouse=True)
def _own_signing_key(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each test signs with a fresh embedded key of its own, whatever the environment says."""
    settings.SIGNING_KEY = ""
    settings.SIGNING_KEY_FILE = ""
    settings.SIGNING_KEY_DIR = tmp_path / "signing"


def demo_text(name: str) -> str:
    return (DEMO / f"{name}.yaml").read_text()


def demo_content(name: str = "refund-agent-v1") -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(demo_text(name)))


def as_yaml(content: dict[str, Any]) -> str:
    return yaml.safe_dump(content, sort_keys=False, allow_unicode=True)


def state() -> tuple[int, ...]:
    """Everything a bundles write could leave behind."""
    return (
        BundleVersion.objects.count(),
        Evaluation.objects.count(),
        PromotionGate.objects.count(),
        GateRequirement.objects.count(),
        SigningKey.objects.count(),
        AuditEvent.objects.count(),
    )


def push(
    client: APIClient,
    agent: Agent,
    body: str | bytes,
    *,
    message: str | None = "why",
    content_type: str = "application/yaml",
    **params: str,
) -> Any:
    qs = urlencode({**({"message": message} if message is not None else {}), **params})
    return client.generic(
        "POST", f"/api/v1/agents/{agent.pk}/bundles/?{qs}", body, content_type=content_type
    )


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="refund-agent", name="Refund agent")
