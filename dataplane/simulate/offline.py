"""Run the fake agent against a snapshot in memory: no control plane, no threads.

Used to compare bundle versions before (or without) a rollout, and by the tests."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from ..breaker import BreakerBoard
from ..canonical import RFC8785, bundle_digest, digest
from ..guardrails import RequestContext, RequestGuard
from ..snapshot import SCHEMA, Snapshot
from .agent import FakeAgent, RequestRecord, synthetic_request


def snapshot_for(
    agent: str,
    stable: Mapping[str, Any] | None,
    *,
    stable_version: int = 1,
    candidate: Mapping[str, Any] | None = None,
    candidate_version: int = 2,
    percentage: float = 0,
    revision: int = 1,
    kill_switches: Iterable[Mapping[str, Any]] = (),
    tenant: str = "acme",
    environment: str = "production",
    phase: str = "canary",
    shadow_percentage: float = 0,
    stickiness: str = "sessionId",
    constraints: Iterable[Mapping[str, Any]] = (),
    budgets: Iterable[Mapping[str, Any]] = (),
) -> Snapshot:
    """An (unsigned) snapshot serving ``stable`` and optionally a ``candidate`` rollout
    (``phase`` canary with ``percentage``, or shadow with ``shadow_percentage``; Unleash
    ``constraints`` such as ``{"contextName": "tenantId", "operator": "IN", ...}``) and the
    ``budgets`` of the snapshot, in its JSON shape (docs/budgets.md)."""

    def version(number: int, bundle: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if bundle is None:
            return None
        return {
            "version": number,
            "digest": bundle_digest(bundle),
            "bundle": dict(bundle),
            "canonical": RFC8785,
        }

    rollout = None
    if candidate is not None:
        group_id = f"{agent}:{environment}:rollout-1"
        rollout = {
            "id": 1,
            "phase": phase,
            "percentage": 0 if phase == "shadow" else percentage,
            "shadow_percentage": shadow_percentage if phase == "shadow" else 0,
            "stickiness": stickiness,
            "group_id": group_id,
            "constraints": [dict(c) for c in constraints],
        }
    content = {
        "schema": SCHEMA,
        "canonical": RFC8785,
        "tenant": tenant,
        "environment": environment,
        "revision": revision,
        "agents": {
            agent: {
                "stable": version(stable_version, stable),
                "candidate": version(candidate_version, candidate),
                "rollout": rollout,
            }
        },
        "flags": [],
        "kill_switches": [dict(switch) for switch in kill_switches],
        "budgets": [dict(budget) for budget in budgets],
    }
    return Snapshot.parse(content, digest=digest(content))


def run_requests(
    snapshot: Snapshot | None,
    agent: str,
    *,
    count: int,
    seed: int | str = 0,
    instance_id: str = "offline",
    tool_failure_rate: float = 0.02,
    breakers: BreakerBoard | None = None,
    clock: Callable[[], datetime] | None = None,
) -> list[RequestRecord]:
    """Handle ``count`` synthetic requests; the same seed gives the same requests, so two
    snapshots can be compared on identical traffic. A request of a session the rollout
    shadows gives two records: the live one (stable) and the candidate's, variant
    ``shadow``, its tool calls not executed. ``clock``: the aware "now" the snapshot's
    budgets are judged at (the wall clock by default). No control plane: reservations under
    strict budgets are granted locally."""
    fake = FakeAgent(agent, tool_failure_rate=tool_failure_rate)
    records = []
    for number in range(count):
        request = synthetic_request(random.Random(f"{seed}:{number}"), f"{instance_id}-{number}")
        context = RequestContext(
            end_user_role=request.end_user_role,
            tenant=snapshot.tenant if snapshot else None,
            environment=snapshot.environment if snapshot else None,
        )
        properties = {"tenantId": request.tenant} if request.tenant else None
        guard = RequestGuard(
            snapshot,
            agent=agent,
            session_id=request.session_id,
            context=context,
            breakers=breakers,
            properties=properties,
            clock=clock,
        )
        records.append(fake.handle(request, guard, instance_id))
        shadow = RequestGuard(
            snapshot,
            agent=agent,
            session_id=request.session_id,
            context=context,
            properties=properties,
            shadow=True,
            clock=clock,
        )
        if shadow.version is not None:
            records.append(fake.handle(request, shadow, instance_id))
    return records
