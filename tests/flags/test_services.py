"""Services: revision bumps in the same transaction, audit events, kill switch scope and
propagation bookkeeping, and the selectors the runtime snapshot uses."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.audit.models import AuditEvent
from apps.core.roles import Role
from apps.flags import services
from apps.flags.models import Flag, KillSwitch, Segment
from apps.flags.selectors import flags_for_snapshot, kill_switches_for_snapshot
from apps.tenancy.models import Environment, Tenant

from ..factories import AgentFactory, make_user
from .conftest import SYSTEM, make_flag, revision_of

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- flags


def test_flag_create__bumps_revision_and_audits(development: Environment) -> None:
    before = revision_of(development)

    flag = make_flag(
        development,
        "checkout",
        strategies=[{"name": "flexibleRollout", "parameters": {"rollout": 10}}],
    )

    assert revision_of(development) == before + 1
    event = AuditEvent.objects.get(action="flag.created")
    assert event.target_id == str(flag.pk)
    assert event.after["revision"] == before + 1
    assert flag.strategies[0]["parameters"] == {
        "rollout": "10",
        "stickiness": "default",
        "groupId": "checkout",
    }


def test_flag_update_toggle_delete__each_bump_revision_once(development: Environment) -> None:
    flag = make_flag(development, "checkout")
    start = revision_of(development)

    services.flag_update(actor=SYSTEM, flag=flag, description="new text")
    services.flag_toggle(actor=SYSTEM, flag=flag, enabled=False)
    services.flag_toggle(actor=SYSTEM, flag=flag, enabled=False)  # already off: nothing to announce
    services.flag_delete(actor=SYSTEM, flag=flag)

    assert revision_of(development) == start + 3
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True))[-3:] == [
        "flag.updated",
        "flag.disabled",
        "flag.deleted",
    ]


def test_flag_update__invalid__nothing_changes(development: Environment) -> None:
    flag = make_flag(development, "checkout")
    start, events = revision_of(development), AuditEvent.objects.count()

    with pytest.raises(ValidationError) as excinfo:
        services.flag_update(
            actor=SYSTEM,
            flag=flag,
            strategies=[{"name": "flexibleRollout", "parameters": {"rollout": "150"}}],
        )

    assert "strategies.0.parameters.rollout" in excinfo.value.message_dict
    flag.refresh_from_db()
    assert flag.strategies[0]["name"] == "default"
    assert (revision_of(development), AuditEvent.objects.count()) == (start, events)


def test_flag_toggle__production_without_reason__refused(production: Environment) -> None:
    flag = make_flag(production, "checkout")

    with pytest.raises(ValidationError) as excinfo:
        services.flag_toggle(actor=SYSTEM, flag=flag, enabled=False, reason=" ")

    assert "reason" in excinfo.value.message_dict
    flag.refresh_from_db()
    assert flag.enabled is True
    services.flag_toggle(actor=SYSTEM, flag=flag, enabled=False, reason="incident 42")
    assert AuditEvent.objects.filter(action="flag.disabled", reason="incident 42").exists()


def test_flag_create__same_name_in_environment__refused(development: Environment) -> None:
    make_flag(development, "checkout")
    with pytest.raises(ValidationError) as excinfo:
        make_flag(development, "checkout")
    assert "name" in excinfo.value.message_dict


def test_flag_delete__parent_of_another_flag__refused(development: Environment) -> None:
    parent = make_flag(development, "parent")
    make_flag(development, "child", dependencies=[{"feature": "parent"}])
    with pytest.raises(ValidationError):
        services.flag_delete(actor=SYSTEM, flag=parent)
    assert Flag.objects.filter(pk=parent.pk).exists()


def test_flag_create__viewer__refused(tenant: Tenant, development: Environment) -> None:
    viewer = make_user(Role.VIEWER, tenant)
    with pytest.raises(PermissionDenied):
        services.flag_create(
            actor=viewer, environment=development, name="x", strategies=[{"name": "default"}]
        )
    assert not Flag.objects.exists()


# --------------------------------------------------------------------------- segments


def test_segment_lifecycle__bumps_and_guards_use(development: Environment) -> None:
    start = revision_of(development)
    segment = services.segment_create(
        actor=SYSTEM,
        environment=development,
        name="beta",
        constraints=[{"contextName": "userId", "operator": "IN", "values": ["1"]}],
    )
    assert segment.segment_id == 1
    flag = make_flag(development, "checkout", strategies=[{"name": "default", "segments": [1]}])
    with pytest.raises(ValidationError):
        services.segment_delete(actor=SYSTEM, segment=segment)

    services.flag_update(actor=SYSTEM, flag=flag, strategies=[{"name": "default"}])
    services.segment_update(actor=SYSTEM, segment=segment, name="beta testers")
    services.segment_delete(actor=SYSTEM, segment=segment)

    assert revision_of(development) == start + 5
    assert not Segment.objects.exists()


def test_flags_for_snapshot__segments_inlined(development: Environment) -> None:
    services.segment_create(
        actor=SYSTEM,
        environment=development,
        name="beta",
        constraints=[{"contextName": "userId", "operator": "IN", "values": ["1"]}],
    )
    make_flag(
        development,
        "checkout",
        strategies=[
            {
                "name": "default",
                "segments": [1],
                "constraints": [{"contextName": "appName", "operator": "IN", "values": ["web"]}],
            }
        ],
    )

    [feature] = flags_for_snapshot(environment_id=development.pk)

    assert feature["name"] == "checkout"
    strategy = feature["strategies"][0]
    assert "segments" not in strategy
    assert [c["contextName"] for c in strategy["constraints"]] == ["appName", "userId"]


# --------------------------------------------------------------------------- kill switches


def _revisions(*environments: Environment) -> list[int]:
    return [revision_of(e) for e in environments]


@pytest.mark.parametrize(
    ("scope", "reach"),
    [
        ("global", {"acme": 3, "globex": 1}),
        ("tenant", {"acme": 3, "globex": 0}),
        ("agent", {"acme": 3, "globex": 0}),
        ("environment", {"acme": 1, "globex": 0}),
    ],
)
def test_kill_switch_engage__bumps_every_affected_environment(
    scope: str, reach: dict[str, int], tenant: Tenant, other_tenant: Tenant, production: Environment
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    environments = list(Environment.objects.order_by("pk"))
    before = {e.pk: e.revision for e in environments}
    kwargs = {
        "global": {},
        "tenant": {"tenant": tenant},
        "agent": {"tenant": tenant, "agent": agent},
        "environment": {"tenant": tenant, "environment": production},
    }[scope]

    switch = services.kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope=scope,
        tool_pattern="issue_*",
        reason="refund loop",
        **kwargs,
    )

    bumped = {e.pk for e in environments if revision_of(e) == before[e.pk] + 1}
    untouched = {e.pk for e in environments if revision_of(e) == before[e.pk]}
    assert bumped | untouched == set(before)
    assert {
        slug: sum(1 for e in environments if e.pk in bumped and e.tenant.slug == slug)
        for slug in ("acme", "globex")
    } == reach
    assert switch.engaged_revisions == {str(pk): before[pk] + 1 for pk in bumped}


def test_kill_switch__engage_and_release__audited_with_reason(
    tenant: Tenant, production: Environment
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    operator = make_user(Role.OPERATOR, tenant)

    switch = services.kill_switch_engage(
        actor=operator,
        kind="agent_stopped",
        scope="agent",
        tenant=tenant,
        agent=agent,
        reason="answers in Klingon",
    )
    engaged = AuditEvent.objects.get(action="kill_switch.engaged")
    assert (engaged.actor_id, engaged.reason, engaged.tenant_id) == (
        operator.pk,
        "answers in Klingon",
        tenant.pk,
    )
    assert engaged.after["agent"] == "support-bot"
    assert engaged.after["engaged_revisions"] == switch.engaged_revisions

    revision_before_release = revision_of(production)
    released = services.kill_switch_release(actor=operator, switch=switch, reason="fixed in v4")

    event = AuditEvent.objects.get(action="kill_switch.released")
    assert event.reason == "fixed in v4"
    assert event.before["released_at"] is None and event.after["released_at"] is not None
    assert released.released_revisions[str(production.pk)] == revision_before_release + 1
    with pytest.raises(ValidationError):
        services.kill_switch_release(actor=operator, switch=switch, reason="again")


def test_kill_switch_engage__without_reason__refused_and_nothing_stored(tenant: Tenant) -> None:
    start = _revisions(*tenant.environments.all())
    with pytest.raises(ValidationError) as excinfo:
        services.kill_switch_engage(
            actor=SYSTEM,
            kind="tool_disabled",
            scope="tenant",
            tenant=tenant,
            tool_pattern="search",
            reason="  ",
        )
    assert "reason" in excinfo.value.message_dict
    assert not KillSwitch.objects.exists()
    assert _revisions(*tenant.environments.all()) == start
    assert not AuditEvent.objects.filter(action="kill_switch.engaged").exists()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "tool_disabled", "scope": "tenant", "tool_pattern": ""}, "tool_pattern"),
        ({"kind": "tool_disabled", "scope": "tenant", "tool_pattern": "rm -rf"}, "tool_pattern"),
        ({"kind": "agent_stopped", "scope": "tenant"}, "agent"),
        ({"kind": "agent_mode", "scope": "agent", "mode": "sleepy", "with_agent": True}, "mode"),
        ({"kind": "tool_disabled", "scope": "environment", "tool_pattern": "x"}, "environment"),
        ({"kind": "teleport", "scope": "tenant"}, "kind"),
        ({"kind": "tool_disabled", "scope": "planet", "tool_pattern": "x"}, "scope"),
    ],
)
def test_kill_switch_engage__bad_input__field_error(
    kwargs: dict, field: str, tenant: Tenant
) -> None:
    agent = AgentFactory(tenant=tenant) if kwargs.pop("with_agent", False) else None
    with pytest.raises(ValidationError) as excinfo:
        services.kill_switch_engage(actor=SYSTEM, tenant=tenant, agent=agent, reason="r", **kwargs)
    assert field in excinfo.value.message_dict
    assert not KillSwitch.objects.exists()


def test_kill_switch_engage__same_switch_twice__refused(tenant: Tenant) -> None:
    services.kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope="tenant",
        tenant=tenant,
        tool_pattern="search",
        reason="r",
    )
    with pytest.raises(ValidationError):
        services.kill_switch_engage(
            actor=SYSTEM,
            kind="tool_disabled",
            scope="tenant",
            tenant=tenant,
            tool_pattern="search",
            reason="r",
        )
    assert KillSwitch.objects.count() == 1


def test_kill_switch_engage__global_by_operator__refused(tenant: Tenant) -> None:
    operator = make_user(Role.OPERATOR, tenant)
    with pytest.raises(PermissionDenied):
        services.kill_switch_engage(
            actor=operator, kind="tool_disabled", scope="global", tool_pattern="x", reason="r"
        )
    assert not KillSwitch.objects.exists()


def test_kill_switch_engage__other_tenants_agent__refused(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        services.kill_switch_engage(
            actor=SYSTEM,
            kind="agent_stopped",
            scope="agent",
            tenant=tenant,
            agent=other_tenant.agents.get(),
            reason="r",
        )
    assert "agent" in excinfo.value.message_dict


def test_kill_switches_for_snapshot__reach_shape_and_agent_filter(
    tenant: Tenant, other_tenant: Tenant, production: Environment, development: Environment
) -> None:
    bot = AgentFactory(tenant=tenant, slug="support-bot")
    refunds = AgentFactory(tenant=tenant, slug="refund-agent")
    g = services.kill_switch_engage(
        actor=SYSTEM, kind="tool_disabled", scope="global", tool_pattern="shell_*", reason="cve"
    )
    t = services.kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope="tenant",
        tenant=tenant,
        tool_pattern="search",
        reason="loops",
    )
    m = services.kill_switch_engage(
        actor=SYSTEM,
        kind="agent_mode",
        scope="agent",
        tenant=tenant,
        agent=bot,
        mode="read_only",
        reason="bad writes",
    )
    s = services.kill_switch_engage(
        actor=SYSTEM,
        kind="agent_stopped",
        scope="environment",
        tenant=tenant,
        environment=production,
        agent=refunds,
        reason="refund storm",
    )
    services.kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope="tenant",
        tenant=other_tenant,
        tool_pattern="other",
        reason="not ours",
    )
    released = services.kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope="tenant",
        tenant=tenant,
        tool_pattern="old",
        reason="r",
    )
    services.kill_switch_release(actor=SYSTEM, switch=released, reason="done")

    in_production = kill_switches_for_snapshot(environment_id=production.pk, agent_id=None)
    for_bot = kill_switches_for_snapshot(environment_id=production.pk, agent_id=bot.pk)
    in_development = kill_switches_for_snapshot(environment_id=development.pk, agent_id=None)

    assert [d["id"] for d in in_production] == [g.pk, t.pk, m.pk, s.pk]
    assert [d["id"] for d in for_bot] == [g.pk, t.pk, m.pk]
    assert [d["id"] for d in in_development] == [g.pk, t.pk, m.pk]
    assert in_production[0] == {
        "id": g.pk,
        "kind": "tool_disabled",
        "tool_pattern": "shell_*",
        "agent": None,
        "scope": "global",
        "reason": "cve",
        "engaged_at": g.engaged_at.isoformat(),
    }
    assert in_production[2] == {
        "id": m.pk,
        "kind": "agent_mode",
        "mode": "read_only",
        "agent": "support-bot",
        "scope": "agent",
        "reason": "bad writes",
        "engaged_at": m.engaged_at.isoformat(),
    }
    assert (
        in_production[3]["kind"] == "agent_stopped" and in_production[3]["agent"] == "refund-agent"
    )
    assert "tool_pattern" not in in_production[3] and "mode" not in in_production[3]
