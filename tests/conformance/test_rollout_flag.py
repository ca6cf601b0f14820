"""The ``rollout.<agent>`` feature for unmodified Unleash SDKs: the pinned Python SDK, polling
the real server, enables it for exactly the sessions the snapshot's rollout sends to the
candidate in the reference runtime (``dataplane.guardrails.choose_version``, which is
``dataplane.bucketing.flexible_rollout_enabled`` behind the rollout's constraints); the
feature's ETag moves with every transition; per-tenant constraints agree too."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push
from apps.rollouts.models import Rollout
from apps.rollouts.services import deployment_create, rollout_start, rollout_transition
from apps.runtimes.snapshot import snapshot_content
from apps.tenancy.models import Environment, Tenant
from dataplane.bucketing import flexible_rollout_enabled
from dataplane.guardrails import choose_version
from dataplane.snapshot import Snapshot

from ..factories import AgentFactory
from ..flags.conftest import make_token
from .conftest import SdkFactory, wait_until

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")
SESSIONS = [f"session-{i}" for i in range(5_000)]
TENANTS = ["acme", "globex", "initech", "hooli"]
FEATURE = "rollout.support-bot"


def _rollout(tenant: Tenant, **start: object) -> tuple[Environment, Rollout]:
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    for name in ("support-bot-v1", "support-bot-v2"):
        bundle_version_push(
            actor=ACTOR, agent=agent, source=(DEMO / f"{name}.yaml").read_text(), message=name
        )
    development = tenant.environments.get(slug="development")
    deployment_create(
        actor=ACTOR,
        agent=agent,
        environment=development,
        version=BundleVersion.objects.get(agent=agent, number=1),
        reason="v1",
    )
    rollout = rollout_start(
        actor=ACTOR,
        agent=agent,
        environment=development,
        candidate=BundleVersion.objects.get(agent=agent, number=2),
        reason="friendlier prompt",
        **start,  # type: ignore[arg-type]
    )
    return development, rollout


def _snapshot(environment: Environment) -> Snapshot:
    return Snapshot.parse(snapshot_content(environment=environment, agent_id=None), digest="t")


def _advance(rollout: Rollout) -> None:
    rollout_transition(actor=ACTOR, rollout_id=rollout.pk, event="advance", reason="next step")


def _features(server: str, token: str, etag: str = "") -> requests.Response:
    headers = {"Authorization": token, **({"If-None-Match": etag} if etag else {})}
    return requests.get(f"{server}/api/client/features", headers=headers, timeout=10)


def test_rollout_feature__sdk_enables_exactly_the_sessions_the_runtime_sends_to_the_candidate(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory
) -> None:
    development, rollout = _rollout(tenant)
    _advance(rollout)  # 10%: enough sessions on each side to tell a difference
    token = make_token(development)
    first = _features(asgi_server, token)
    feature = next(f for f in first.json()["features"] if f["name"] == FEATURE)
    assert feature["enabled"] and [s["name"] for s in feature["strategies"]] == ["flexibleRollout"]
    client = sdk(token)
    snapshot = _snapshot(development)
    split = snapshot.agents["support-bot"].rollout
    assert split is not None and split.percentage == 10.0

    by_sdk = {s for s in SESSIONS if client.is_enabled(FEATURE, {"sessionId": s})}
    by_runtime = {
        s for s in SESSIONS if choose_version(snapshot, "support-bot", s).role == "candidate"
    }
    by_bucketing = {
        s
        for s in SESSIONS
        if flexible_rollout_enabled(
            split.percentage, split.group_id, split.stickiness, {"sessionId": s}
        )
    }
    assert 0.08 <= len(by_sdk) / len(SESSIONS) <= 0.12
    assert by_sdk == by_runtime == by_bucketing

    # the next step: a new revision, a new ETag, and the SDK follows at its next poll
    unchanged = _features(asgi_server, token, etag=first.headers["ETag"])
    assert unchanged.status_code == 304
    _advance(rollout)
    moved = _features(asgi_server, token, etag=first.headers["ETag"])
    assert moved.status_code == 200 and moved.headers["ETag"] != first.headers["ETag"]
    half = _snapshot(development)
    expected = {s for s in SESSIONS if choose_version(half, "support-bot", s).role == "candidate"}
    assert wait_until(
        lambda: {s for s in SESSIONS if client.is_enabled(FEATURE, {"sessionId": s})} == expected
    )
    assert by_runtime <= expected  # the same group id: nobody leaves the candidate

    # rolled back: the feature is gone, the SDK answers false for everyone
    rollout_transition(actor=ACTOR, rollout_id=rollout.pk, event="rollback", reason="bad")
    gone = _features(asgi_server, token).json()["features"]
    assert FEATURE not in [f["name"] for f in gone]
    assert wait_until(
        lambda: not any(client.is_enabled(FEATURE, {"sessionId": s}) for s in SESSIONS[:200])
    )


def test_rollout_feature__tenant_constraint__sdk_and_runtime_agree_per_tenant(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory
) -> None:
    development, rollout = _rollout(
        tenant,
        constraints=[{"contextName": "tenantId", "operator": "IN", "values": ["acme", "hooli"]}],
    )
    for _ in range(2):
        _advance(rollout)  # 50%
    client = sdk(make_token(development))
    snapshot = _snapshot(development)
    contexts = [(s, TENANTS[i % len(TENANTS)]) for i, s in enumerate(SESSIONS)]

    by_sdk = {
        (s, t)
        for s, t in contexts
        if client.is_enabled(FEATURE, {"sessionId": s, "properties": {"tenantId": t}})
    }
    by_runtime = {
        (s, t)
        for s, t in contexts
        if choose_version(snapshot, "support-bot", s, properties={"tenantId": t}).role
        == "candidate"
    }
    assert by_sdk == by_runtime
    assert {t for _, t in by_sdk} == {"acme", "hooli"}
    assert 0.4 <= len(by_sdk) / (len(SESSIONS) / 2) <= 0.6


@pytest.mark.django_db
def test_rollout_flag_name__reserved__a_flag_cannot_take_it(tenant: Tenant) -> None:
    from django.core.exceptions import ValidationError

    from ..flags.conftest import make_flag

    with pytest.raises(ValidationError, match="reserved for rollouts"):
        make_flag(tenant.environments.get(slug="development"), FEATURE)


def test_rollout_feature__shadow_phase__enabled_at_zero__sdk_serves_stable_to_everyone(
    asgi_server: str, tenant: Tenant, sdk: SdkFactory
) -> None:
    from apps.rollouts.plans import default_plan
    from apps.rollouts.services import rollout_plan_set

    development = tenant.environments.get(slug="development")
    plan = default_plan()
    plan["shadow"]["percentage"] = 25
    rollout_plan_set(actor=ACTOR, environment=development, document=plan, reason="shadow first")
    development, rollout = _rollout(tenant)
    assert rollout.state == "shadow"
    token = make_token(development)
    feature = next(
        f for f in _features(asgi_server, token).json()["features"] if f["name"] == FEATURE
    )
    assert feature["enabled"] and feature["strategies"][0]["parameters"]["rollout"] == "0"
    client = sdk(token)
    snapshot = _snapshot(development)
    assert not any(client.is_enabled(FEATURE, {"sessionId": s}) for s in SESSIONS[:1000])
    assert {choose_version(snapshot, "support-bot", s).role for s in SESSIONS[:1000]} == {"stable"}
    split = snapshot.agents["support-bot"].rollout
    assert split is not None and (split.phase, split.shadow_percentage) == ("shadow", 25.0)
