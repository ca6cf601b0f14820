"""The rollout in the data plane: the snapshot's rollout object parsed (old shapes tolerated),
its constraints (IN / NOT_IN, e.g. per tenant), the shadow phase (stable serves, the
candidate also runs for shadowed sessions, nothing it decides is executed), and the variant
every record is labelled with — in the guard, offline and in a simulated fleet."""

from __future__ import annotations

from typing import Any

import pytest

from dataplane.breaker import BreakerBoard
from dataplane.bucketing import constraint_met, flexible_rollout_enabled
from dataplane.client import Backoff
from dataplane.guardrails import RequestContext, RequestGuard, choose_shadow, choose_version
from dataplane.ratelimit import RateLimiter
from dataplane.simulate import Fleet, run_requests, snapshot_for
from dataplane.simulate.fleet import usage_record
from dataplane.snapshot import Snapshot, SnapshotError

from .bundles import BAD_SUPPORT_BOT, GOOD_SUPPORT_BOT
from .conftest import snapshot_content
from .fake_control_plane import TOKEN, WAIT, FakeControlPlane

AGENT = "support-bot"
GROUP = f"{AGENT}:production:rollout-1"
SESSIONS = [f"s-{n}" for n in range(2000)]
ACME_ONLY = [{"contextName": "tenantId", "operator": "IN", "values": ["acme"]}]


def rollout(**options: Any) -> Snapshot:
    return snapshot_for(AGENT, GOOD_SUPPORT_BOT, candidate=BAD_SUPPORT_BOT, **options)


# -- the snapshot's rollout object -----------------------------------------------------------


def test_snapshot__rollout_fields__parsed() -> None:
    split = rollout(phase="shadow", shadow_percentage=20, constraints=ACME_ONLY)
    parsed = split.agents[AGENT].rollout
    assert parsed is not None
    assert (parsed.id, parsed.phase, parsed.percentage, parsed.shadow_percentage) == (
        1, "shadow", 0.0, 20.0,
    )  # fmt: skip
    (constraint,) = parsed.constraints
    assert (constraint.context_name, constraint.operator, constraint.values) == (
        "tenantId", "IN", frozenset({"acme"}),
    )  # fmt: skip


def test_snapshot__rollout_of_an_older_control_plane__a_plain_canary() -> None:
    content = dict(rollout(percentage=30).content)
    agent = dict(content["agents"][AGENT])
    agent["rollout"] = {"percentage": 30, "stickiness": "sessionId", "group_id": GROUP}
    content["agents"] = {AGENT: agent}
    parsed = Snapshot.parse(content, digest="d").agents[AGENT].rollout
    assert parsed is not None
    assert (parsed.phase, parsed.shadow_percentage, parsed.constraints) == ("canary", 0.0, ())


@pytest.mark.parametrize(
    "bad",
    [{"shadow_percentage": "lots"}, {"constraints": "acme"}, {"constraints": [{"values": "x"}]}],
)
def test_snapshot__malformed_rollout_fields__refused(bad: dict[str, Any]) -> None:
    content = dict(rollout(percentage=30).content)
    agent = dict(content["agents"][AGENT])
    agent["rollout"] = {**agent["rollout"], **bad}
    content["agents"] = {AGENT: agent}
    with pytest.raises(SnapshotError):
        Snapshot.parse(content, digest="d")


# -- constraints -----------------------------------------------------------------------------


def test_constraints__tenant_in__only_that_tenants_sessions_get_the_candidate() -> None:
    snap = rollout(percentage=50, constraints=ACME_ONLY)
    served = {
        tenant: {
            s
            for s in SESSIONS
            if choose_version(snap, AGENT, s, properties={"tenantId": tenant}).role == "candidate"
        }
        for tenant in ("acme", "globex")
    }
    in_bucket = {
        s for s in SESSIONS if flexible_rollout_enabled(50, GROUP, "sessionId", {"sessionId": s})
    }
    assert served["acme"] == in_bucket and served["globex"] == set()
    # no tenant in the request: the constraint is not met
    assert {choose_version(snap, AGENT, s).role for s in SESSIONS[:100]} == {"stable"}


def test_constraints__not_in__everyone_but_those_tenants() -> None:
    snap = rollout(
        percentage=100,
        constraints=[{"contextName": "tenantId", "operator": "NOT_IN", "values": ["acme"]}],
    )
    assert choose_version(snap, AGENT, "s-1", properties={"tenantId": "acme"}).role == "stable"
    assert choose_version(snap, AGENT, "s-1", properties={"tenantId": "hooli"}).role == "candidate"
    assert choose_version(snap, AGENT, "s-1").role == "candidate"  # absent: not among them


def test_constraints__unknown_operator_or_top_level_field() -> None:
    context = {"userId": "u-7", "sessionId": "s", "properties": {"tenantId": "acme"}}
    assert constraint_met("userId", "IN", ["u-7"], context)
    assert not constraint_met("tenantId", "STR_CONTAINS", ["acme"], context)  # fail closed
    snap = rollout(
        percentage=100,
        constraints=[{"contextName": "tenantId", "operator": "SEMVER_EQ", "values": ["1"]}],
    )
    assert choose_version(snap, AGENT, "s-1", properties={"tenantId": "acme"}).role == "stable"


def test_stickiness_tenant__one_tenant_one_version() -> None:
    snap = rollout(percentage=50, stickiness="tenantId")
    for tenant in ("acme", "globex", "initech", "umbrella", "hooli"):
        roles = {
            choose_version(snap, AGENT, s, properties={"tenantId": tenant}).role
            for s in SESSIONS[:50]
        }
        assert len(roles) == 1


# -- shadow ----------------------------------------------------------------------------------


def test_shadow__live_traffic_stays_stable__shadowed_share_runs_the_candidate() -> None:
    snap = rollout(phase="shadow", shadow_percentage=30)
    assert {choose_version(snap, AGENT, s).role for s in SESSIONS} == {"stable"}
    shadowed = {s for s in SESSIONS if choose_shadow(snap, AGENT, s) is not None}
    expected = {
        s for s in SESSIONS if flexible_rollout_enabled(30, GROUP, "sessionId", {"sessionId": s})
    }
    assert shadowed == expected and 0.25 <= len(shadowed) / len(SESSIONS) <= 0.35
    version = choose_shadow(snap, AGENT, next(iter(shadowed)))
    assert version is not None and (version.role, version.version) == ("shadow", 2)
    # a canary has no shadow, and a shadow respects the constraints
    assert all(choose_shadow(rollout(percentage=50), AGENT, s) is None for s in SESSIONS[:200])
    narrowed = rollout(phase="shadow", shadow_percentage=100, constraints=ACME_ONLY)
    assert choose_shadow(narrowed, AGENT, "s-1", properties={"tenantId": "globex"}) is None
    assert choose_shadow(narrowed, AGENT, "s-1", properties={"tenantId": "acme"}) is not None


def test_shadow_guard__decides_as_usual__nothing_executable_no_shared_state_touched() -> None:
    snap = rollout(phase="shadow", shadow_percentage=100)
    breakers, limits = BreakerBoard(), RateLimiter()
    shadow = RequestGuard(
        snap,
        agent=AGENT,
        session_id="s-1",
        context=RequestContext(end_user_role="customer"),
        breakers=breakers,
        rate_limits=limits,
        shadow=True,
    )
    assert shadow.version is not None and shadow.version.role == "shadow"
    lookup = shadow.check_tool_call("lookup_order", {"order_id": "A12345678"})
    assert lookup.allowed and lookup.shadow and not lookup.executable
    denied = shadow.check_tool_call("drop_database", {})
    assert denied.denied and not denied.executable
    for _ in range(10):
        shadow.record_tool_call("lookup_order", ok=False)
    assert shadow.usage.not_executed == ["lookup_order"] * 10 and shadow.usage.tool_calls == 10
    assert breakers.get("lookup_order").failures == 0  # a shadow's failures open no circuit
    live = RequestGuard(snap, agent=AGENT, session_id="s-1", breakers=breakers)
    assert live.version is not None and live.version.role == "stable"
    assert live.check_tool_call("lookup_order", {"order_id": "A12345678"}).executable


def test_simulate_offline__shadowed_requests_give_a_stable_and_a_shadow_record() -> None:
    snap = rollout(phase="shadow", shadow_percentage=40)
    records = run_requests(snap, AGENT, count=400, seed=3)
    live = [r for r in records if r.role != "shadow"]
    shadows = [r for r in records if r.role == "shadow"]
    assert len(live) == 400 and {r.role for r in live} == {"stable"}
    assert 0.25 <= len(shadows) / 400 <= 0.55
    by_id = {r.request_id: r for r in live}
    for record in shadows:
        original = by_id[record.request_id.removesuffix(":shadow")]
        assert record.session_id == original.session_id and record.version == 2
        assert record.tools_called == []  # recorded, never performed
        assert usage_record(record).variant == "shadow"
    assert sum(len(r.not_executed) for r in shadows) > 0
    assert all(r.not_executed == [] for r in live)


def test_simulate_offline__canary__records_labelled_with_the_variant_served() -> None:
    records = run_requests(rollout(percentage=50, constraints=ACME_ONLY), AGENT, count=600, seed=5)
    variants = {(r.session_id, usage_record(r).variant) for r in records}
    assert {v for _, v in variants} == {"stable", "candidate"}
    # the simulator's sessions carry their tenant: only acme's may get the candidate
    from dataplane.simulate.agent import TENANTS

    for session, variant in variants:
        if variant == "candidate":
            assert TENANTS[int(session.removeprefix("session-")) % len(TENANTS)] == "acme"
    assert all(usage_record(r).variant == r.role for r in records)


def test_fleet__shadow_phase__reports_stable_and_shadow_records(
    control_plane: FakeControlPlane,
) -> None:
    content = snapshot_content(1)
    content["agents"][AGENT]["candidate"] = dict(
        rollout(phase="shadow").content["agents"][AGENT]["candidate"]
    )
    content["agents"][AGENT]["rollout"] = {
        "id": 7, "phase": "shadow", "percentage": 0, "shadow_percentage": 100,
        "stickiness": "sessionId", "group_id": "g", "constraints": [],
    }  # fmt: skip
    control_plane.publish(content)
    control_plane.records_status = 202
    fleet = Fleet(
        control_plane.url, TOKEN, runtimes=2, agent=AGENT, rps=1000, requests_per_runtime=10,
        backoff=Backoff(0.01, 0.05),
    )  # fmt: skip
    fleet.start()
    try:
        assert fleet.wait_finished(WAIT)
    finally:
        assert fleet.stop()
    assert control_plane.wait_for(lambda: len(control_plane.records) == 40)
    variants = [record["variant"] for record in control_plane.records]
    assert variants.count("stable") == 20 and variants.count("shadow") == 20
