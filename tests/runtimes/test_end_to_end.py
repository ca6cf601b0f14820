"""The reference runtime (dataplane) against the real server: fetch, verify, apply, ACK; a
deploy and a kill switch reach it by long-poll; it survives the control plane going away."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.flags.services.kill_switches import kill_switch_engage
from apps.rollouts.services import deployment_create
from apps.runtimes.models import RuntimeInstance
from apps.runtimes.selectors import convergence_for
from apps.tenancy.models import Environment, Tenant
from dataplane.client import Runtime

from ..conftest import Served
from ..factories import AgentFactory
from ..waiting import eventually

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")


@pytest.fixture
def released(tenant: Tenant):  # type: ignore[no-untyped-def]
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    v1 = bundle_version_push(
        actor=ACTOR,
        agent=agent,
        message="baseline",
        source=(DEMO / "support-bot-v1.yaml").read_text(),
    ).version
    v2 = bundle_version_push(
        actor=ACTOR,
        agent=agent,
        message="friendlier",
        source=(DEMO / "support-bot-v2.yaml").read_text(),
    ).version
    production = tenant.environments.get(slug="production")
    deployment_create(actor=ACTOR, agent=agent, environment=production, version=v1, reason="launch")
    _, token = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=production, name="fleet"
    )
    return agent, production, token, v1, v2


def test_runtime__deploy_and_kill_switch__reach_it_and_it_acks(
    asgi_server: str, released, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    agent, production, token, v1, v2 = released
    runtime = Runtime(
        asgi_server,
        token,
        "pod-1",
        name="pod one",
        cache_dir=tmp_path,
        heartbeat_interval_s=0.5,
        wait_s=10,
    )
    runtime.start()
    try:
        assert runtime.wait_for_revision(
            Environment.objects.get(pk=production.pk).revision, timeout=15
        )
        snapshot = runtime.snapshot
        assert snapshot is not None
        assert snapshot.agents["support-bot"].stable.digest == v1.digest
        assert (
            runtime.guard("support-bot", "s1")
            .check_tool_call("lookup_order", {"order_id": "A12345678"})
            .allowed
        )
        assert eventually(
            lambda: (
                convergence_for(environments=[Environment.objects.get(pk=production.pk)])[
                    0
                ].converged
            )
        )

        deployment = deployment_create(
            actor=ACTOR, agent=agent, environment=production, version=v2, reason="friendlier"
        )
        assert runtime.wait_for_revision(deployment.revision, timeout=15)
        assert runtime.snapshot.agents["support-bot"].stable.digest == v2.digest  # type: ignore[union-attr]

        switch = kill_switch_engage(
            actor=ACTOR,
            kind="tool_disabled",
            scope="agent",
            tenant=production.tenant,
            agent=agent,
            tool_pattern="lookup_*",
            reason="lookup backend leaking PII",
        )
        revision = Environment.objects.get(pk=production.pk).revision
        assert runtime.wait_for_revision(revision, timeout=15)
        decision = runtime.guard("support-bot", "s2").check_tool_call(
            "lookup_order", {"order_id": "A12345678"}
        )
        assert decision.denied
        assert switch.pk in [s.id for s in runtime.snapshot.kill_switches]  # type: ignore[union-attr]
        assert eventually(
            lambda: RuntimeInstance.objects.filter(
                instance_id="pod-1", applied_revision=revision
            ).exists()
        )
        instance = RuntimeInstance.objects.get(instance_id="pod-1")
        assert instance.digests == {"support-bot": v2.digest}
    finally:
        runtime.stop()


def test_runtime__control_plane_gone__restarts_from_last_known_good(
    asgi_server: str, released, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    agent, production, token, v1, _ = released
    kill_switch_engage(
        actor=ACTOR,
        kind="agent_stopped",
        scope="agent",
        tenant=production.tenant,
        agent=agent,
        reason="incident",
    )
    first = Runtime(
        asgi_server, token, "pod-2", cache_dir=tmp_path, heartbeat_interval_s=0.5, wait_s=5
    )
    first.start()
    assert first.wait_for_revision(Environment.objects.get(pk=production.pk).revision, timeout=15)
    first.stop()

    # A restart while the control plane is unreachable: it serves the cached snapshot, kill
    # switch included, and keeps denying.
    restarted = Runtime(
        "http://127.0.0.1:9", token, "pod-2", cache_dir=tmp_path, heartbeat_interval_s=0.5, wait_s=5
    )
    restarted.start()
    try:
        snapshot = restarted.snapshot
        assert snapshot is not None and snapshot.agents["support-bot"].stable.digest == v1.digest
        assert (
            restarted.guard("support-bot", "s")
            .check_tool_call("lookup_order", {"order_id": "A12345678"})
            .denied
        )
    finally:
        restarted.stop()


def test_runtime__snapshot_sent_gzip__verified_applied_and_acked(
    asgi_server: str, released, tmp_path: Path, asgi_served: list[Served]
) -> None:  # type: ignore[no-untyped-def]
    """The reference runtime asks for gzip, inflates it and verifies the signature over the
    plain canonical bytes, as before; a new revision reaches it gzip-coded by long-poll."""
    agent, production, token, v1, v2 = released
    runtime = Runtime(
        asgi_server, token, "pod-gz", cache_dir=tmp_path, heartbeat_interval_s=0.5, wait_s=10
    )
    runtime.start()
    try:
        assert runtime.wait_for_revision(
            Environment.objects.get(pk=production.pk).revision, timeout=15
        )
        assert runtime.snapshot.agents["support-bot"].stable.digest == v1.digest  # type: ignore[union-attr]
        deployment = deployment_create(
            actor=ACTOR, agent=agent, environment=production, version=v2, reason="friendlier"
        )
        assert runtime.wait_for_revision(deployment.revision, timeout=15)
        assert runtime.snapshot.agents["support-bot"].stable.digest == v2.digest  # type: ignore[union-attr]
        assert eventually(
            lambda: RuntimeInstance.objects.filter(
                instance_id="pod-gz", applied_revision=deployment.revision
            ).exists()
        )
    finally:
        runtime.stop()
    configs = [s for s in asgi_served if s.path == "/api/runtime/v1/config" and s.status == 200]
    assert len(configs) >= 2  # the first snapshot and the deployed one
    assert all(s.request_headers["accept-encoding"] == "gzip" for s in configs)
    assert all(s.headers["content-encoding"] == "gzip" for s in configs)
    # nothing it was sent was refused (a NACK would name the revision it rejected)
    instance = RuntimeInstance.objects.get(instance_id="pod-gz")
    assert (instance.nack_revision, instance.nack_error) == (None, "")
