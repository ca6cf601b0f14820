"""The simulated fleet (the reference runtime) against the real server through a rollout:
in the shadow phase every request is served by stable and shadowed sessions also report a
``shadow`` record; after advancing to the canary, records are labelled ``candidate`` for
the sessions the split sends there — as stored by the records API."""

from __future__ import annotations

from pathlib import Path

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.rollouts.plans import default_plan
from apps.rollouts.services import (
    deployment_create,
    rollout_plan_set,
    rollout_start,
    rollout_transition,
)
from apps.telemetry.models import RequestRecord
from apps.tenancy.models import Tenant
from dataplane.client import Backoff
from dataplane.simulate import Fleet

from ..factories import AgentFactory
from ..waiting import eventually

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")


def _run(url: str, token: str, prefix: str, tmp: Path) -> Fleet:
    fleet = Fleet(
        url,
        token,
        runtimes=2,
        agent="support-bot",
        rps=200,
        requests_per_runtime=40,
        instance_prefix=prefix,
        cache_root=tmp / prefix,
        backoff=Backoff(0.05, 0.2),
        heartbeat_interval_s=0.5,
        wait_s=5,
    )
    fleet.start()  # each runtime fetches the current snapshot before its first request
    assert fleet.wait_finished(60)
    assert fleet.stop()
    return fleet


def test_fleet__shadow_then_canary__records_stored_with_the_variant_served(
    asgi_server: str, tenant: Tenant, tmp_path: Path
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    versions = [
        bundle_version_push(
            actor=ACTOR, agent=agent, source=(DEMO / f"{name}.yaml").read_text(), message=name
        ).version
        for name in ("support-bot-v1", "support-bot-v2")
    ]
    development = tenant.environments.get(slug="development")
    plan = default_plan()
    plan["shadow"]["percentage"] = 50
    plan["steps"] = [{**plan["steps"][0], "percentage": 50}]
    rollout_plan_set(actor=ACTOR, environment=development, document=plan, reason="test")
    deployment_create(
        actor=ACTOR, agent=agent, environment=development, version=versions[0], reason="v1"
    )
    rollout = rollout_start(
        actor=ACTOR, agent=agent, environment=development, candidate=versions[1], reason="v2"
    )
    assert rollout.state == "shadow"
    _, token = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=development, name="fleet"
    )

    shadow_fleet = _run(asgi_server, token, "shadow", tmp_path)
    shadow_records = [r for r in shadow_fleet.records if r.role == "shadow"]
    assert shadow_records and all(r.tools_called == [] for r in shadow_records)
    expected = {"stable": 80, "shadow": len(shadow_records)}
    assert eventually(
        lambda: (
            {
                v: RequestRecord.objects.filter(variant=v, request_id__startswith="shadow-").count()
                for v in ("stable", "shadow", "candidate")
            }
            == {**expected, "candidate": 0}
        ),
        timeout=30,
    )
    stored = RequestRecord.objects.filter(variant="shadow").first()
    assert stored is not None and stored.request_id.endswith(":shadow")

    rollout_transition(actor=ACTOR, rollout_id=rollout.pk, event="advance", reason="canary")
    canary_fleet = _run(asgi_server, token, "canary", tmp_path)
    roles = [r.role for r in canary_fleet.records]
    assert len(roles) == 80 and set(roles) == {"stable", "candidate"}
    assert eventually(
        lambda: (
            RequestRecord.objects.filter(
                variant="candidate", request_id__startswith="canary-"
            ).count()
            == roles.count("candidate")
        ),
        timeout=30,
    )
