from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dataplane.canonical import RFC8785, bundle_digest
from dataplane.snapshot import SCHEMA

from .bundles import GOOD_SUPPORT_BOT
from .fake_control_plane import FakeControlPlane


def snapshot_content(
    revision: int,
    *,
    bundle: dict[str, Any] | None = None,
    kill_switches: list[dict[str, Any]] | None = None,
    tenant: str = "acme",
    budgets: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    bundle = bundle or GOOD_SUPPORT_BOT
    return {
        "schema": SCHEMA,
        "tenant": tenant,
        "environment": "production",
        "revision": revision,
        "agents": {
            "support-bot": {
                "stable": {
                    "version": 1,
                    "digest": bundle_digest(bundle),
                    "bundle": bundle,
                    "canonical": RFC8785,
                },
                "candidate": None,
                "rollout": None,
            }
        },
        "flags": [],
        "kill_switches": kill_switches or [],
        "budgets": budgets or [],
    }


@pytest.fixture
def control_plane() -> Iterator[FakeControlPlane]:
    plane = FakeControlPlane()
    yield plane
    plane.stop()
