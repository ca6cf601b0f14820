"""The incident panel of one agent in one environment (issue 17, part B): stop harm
(disable a deployed tool, force read-only or draft-only, stop the agent), stabilise (roll
back, pause the canary), investigate; each action one POST with a prefilled, required reason,
shown only to roles that may take it, audited, refused (nothing changed) for other roles, an
empty reason or a stale view; then the propagation fragment counts the runtimes serving the
agent until every one has acknowledged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.core.roles import Role
from apps.flags.models import KillSwitch
from apps.rollouts.models import Deployment, Rollout, RolloutAnalysis
from apps.rollouts.selectors import deployment_current
from apps.rollouts.services import deployment_create, rollout_start, rollout_transition
from apps.runtimes.services import runtime_heartbeat_record
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory, make_user

pytestmark = pytest.mark.django_db
DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


@pytest.fixture
def development(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="development")


@pytest.fixture
def versions(agent: Agent, development: Environment) -> tuple[Any, Any]:
    """v1 stable in development, v2 pushed (v2 adds the tool ``open_ticket``)."""
    v1, v2 = (
        bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=name,
            source=(DEMO / f"support-bot-{name}.yaml").read_text(),
        ).version
        for name in ("v1", "v2")
    )
    deployment_create(actor=ACTOR, agent=agent, environment=development, version=v1, reason="go")
    return v1, v2


@pytest.fixture
def rollout(agent: Agent, development: Environment, versions: tuple[Any, Any]) -> Rollout:
    return rollout_start(
        actor=ACTOR, agent=agent, environment=development, candidate=versions[1], reason="try"
    )


def _url(name: str, agent: Agent, environment: Environment) -> str:
    return reverse(
        f"dashboard:{name}", kwargs={"agent_id": agent.pk, "environment_id": environment.pk}
    )


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _state() -> tuple[int, int, int, list[str]]:
    return (
        KillSwitch.objects.count(),
        AuditEvent.objects.count(),
        Deployment.objects.count(),
        list(Rollout.objects.order_by("pk").values_list("state", flat=True)),
    )


def test_panel__operator__one_button_per_deployed_tool_and_reason_prefilled(
    operator: User, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    response = _client(operator).get(_url("incident", agent, development))

    assert response.status_code == 200
    html = response.content.decode()
    # the tools of stable v1 and of the candidate v2 serving in the canary
    assert 'value="tool:lookup_order"' in html
    assert 'value="tool:open_ticket"' in html
    for value in ("mode:read_only", "mode:draft_only", "stop"):
        assert f'name="stop-harm" value="{value}"' in html
    assert f"Roll back rollout #{rollout.pk} to v1" in html
    assert "Pause the canary at 1%" in html
    assert "Incident on support-bot in Development at " in html  # the prefilled reason
    development.refresh_from_db()
    assert f"revision {development.revision}" in html  # the propagation fragment, inline


@pytest.mark.parametrize("role", [Role.VIEWER, Role.APPROVER], ids=["viewer", "approver"])
def test_panel__reading_role__no_action_offered(
    role: Role, tenant: Tenant, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    response = _client(make_user(role, tenant)).get(_url("incident", agent, development))

    assert response.status_code == 200
    html = response.content.decode()
    assert "stop-harm" not in html and "<textarea" not in html
    assert "Roll back rollout" not in html and "Pause the canary" not in html


@pytest.mark.parametrize("json_contains", [True, False], ids=["json-contains", "sqlite-like"])
def test_panel__failing_verdict__quoted_in_the_prefilled_reason_and_listed(
    operator: User,
    agent: Agent,
    development: Environment,
    rollout: Rollout,
    json_contains: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SQLite (make run's embedded database) has no JSON containment lookup: the panel must
    # not depend on it (forced here by saying this database lacks it, as SQLite does, and by
    # naming the vendor otherwise, so PostgreSQL's own form of the lookup is not used)
    if not json_contains:
        monkeypatch.setattr(connection.features, "supports_json_field_contains", False)
        monkeypatch.setattr(connection, "vendor", "sqlite-like")
    for minutes, verdict in ((3, "FAIL"), (2, "PASS"), (1, "PASS")):
        RolloutAnalysis.objects.create(
            rollout=rollout,
            tick=timezone.now() - timedelta(minutes=minutes),
            step_index=0,
            percentage=1,
            decision="hold",
            reason="",
            verdicts=[{"metric": "cost", "verdict": verdict, "reason": f"{minutes} min ago"}],
        )
    RolloutAnalysis.objects.create(
        rollout=rollout,
        tick=timezone.now(),
        step_index=0,
        percentage=1,
        decision="rollback",
        reason="error_rate failed",
        verdicts=[
            {"metric": "latency_p95", "verdict": "PASS", "reason": "fine"},
            {"metric": "error_rate", "verdict": "FAIL", "reason": "33% against 4%"},
        ],
    )

    html = _client(operator).get(_url("incident", agent, development)).content.decode()

    assert f"rollout #{rollout.pk} analysis says error_rate FAIL — 33% against 4%" in html
    assert "error_rate FAIL</span>" in html
    assert "cost FAIL</span> <small>3 min ago" in html and "2 min ago" not in html


def test_panel__another_tenant_or_a_mismatched_environment__404(
    operator: User, agent: Agent, development: Environment, other_tenant: Tenant
) -> None:
    client = _client(operator)
    theirs = other_tenant.environments.get()
    secret = Agent.objects.get(slug="secret-agent")

    assert client.get(_url("incident", agent, theirs)).status_code == 404
    assert client.get(_url("incident", secret, development)).status_code == 404
    assert client.get(_url("incident_propagation", secret, theirs)).status_code == 404


@pytest.mark.parametrize(
    ("harm", "kind", "tool", "mode"),
    [
        ("tool:lookup_order", "tool_disabled", "lookup_order", ""),
        ("mode:read_only", "agent_mode", "", "read_only"),
        ("mode:draft_only", "agent_mode", "", "draft_only"),
        ("stop", "agent_stopped", "", ""),
    ],
    ids=["tool", "read-only", "draft-only", "stop"],
)
def test_stop_harm__operator__kill_switch_on_the_agent_here_audited_with_the_reason(
    harm: str,
    kind: str,
    tool: str,
    mode: str,
    operator: User,
    agent: Agent,
    development: Environment,
    versions: tuple[Any, Any],
) -> None:
    response = _client(operator).post(
        _url("incident_stop_harm", agent, development),
        {"stop-harm": harm, "stop-reason": "refund loop"},
    )

    switch = KillSwitch.objects.get()
    assert (switch.kind, switch.scope, switch.tool_pattern, switch.mode) == (
        kind,
        "environment",
        tool,
        mode,
    )
    assert (switch.agent, switch.environment, switch.reason) == (agent, development, "refund loop")
    revision = switch.engaged_revisions[str(development.pk)]
    assert response.status_code == 302
    assert response["Location"].endswith(f"?revision={revision}#propagation")
    event = AuditEvent.objects.get(action="kill_switch.engaged")
    assert event.reason == "refund loop" and event.actor_label == operator.username


@pytest.mark.parametrize("reason", ["", "   "], ids=["empty", "blank"])
def test_stop_harm__no_reason__400_with_the_field_error_and_nothing_engaged(
    reason: str, operator: User, agent: Agent, development: Environment, versions: Any
) -> None:
    before = _state()

    response = _client(operator).post(
        _url("incident_stop_harm", agent, development),
        {"stop-harm": "stop", "stop-reason": reason},
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="id_stop-reason-errors"' in html and 'aria-invalid="true"' in html
    assert "Say why" in html
    assert _state() == before


@pytest.mark.parametrize("harm", ["", "tool:", "tool:rm -rf", "mode:chaos", "x"])
def test_stop_harm__bad_button_value__400_and_nothing_engaged(
    harm: str, operator: User, agent: Agent, development: Environment, versions: Any
) -> None:
    before = _state()

    response = _client(operator).post(
        _url("incident_stop_harm", agent, development),
        {"stop-harm": harm, "stop-reason": "why"},
    )

    assert response.status_code == 400
    assert 'class="errorlist"' in response.content.decode()
    assert _state() == before


def test_stop_harm__already_engaged__400_naming_it_and_nothing_more(
    operator: User, agent: Agent, development: Environment, versions: Any
) -> None:
    client = _client(operator)
    url = _url("incident_stop_harm", agent, development)
    client.post(url, {"stop-harm": "stop", "stop-reason": "first"})
    before = _state()

    response = client.post(url, {"stop-harm": "stop", "stop-reason": "second"})

    assert response.status_code == 400
    assert "already engaged" in response.content.decode()
    assert _state() == before


@pytest.mark.parametrize("role", [Role.VIEWER, Role.APPROVER], ids=["viewer", "approver"])
@pytest.mark.parametrize("action", ["incident_stop_harm", "incident_rollback", "incident_pause"])
def test_actions__reading_role__403_and_nothing_changed(
    role: Role,
    action: str,
    tenant: Tenant,
    agent: Agent,
    development: Environment,
    rollout: Rollout,
) -> None:
    before = _state()

    response = _client(make_user(role, tenant)).post(
        _url(action, agent, development),
        {
            "stop-harm": "stop",
            "stop-reason": "x",
            "stabilise-reason": "x",
            "stabilise-rollout": rollout.pk,
            "stabilise-expected_version": rollout.sequence,
        },
    )

    assert response.status_code == 403
    assert _state() == before


def test_rollback__running_rollout__rolled_back_and_audited(
    operator: User, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    response = _client(operator).post(
        _url("incident_rollback", agent, development),
        {
            "stabilise-reason": "refund offers spiking",
            "stabilise-rollout": rollout.pk,
            "stabilise-expected_version": rollout.sequence,
        },
    )

    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.ROLLED_BACK
    revision = rollout.transitions.order_by("-id")[0].revision
    assert response.status_code == 302
    assert response["Location"].endswith(f"?revision={revision}#propagation")
    event = AuditEvent.objects.get(action="rollout.rolled_back")
    assert event.reason == "refund offers spiking"


def test_rollback__no_rollout__stable_back_to_the_last_known_good_version(
    operator: User, agent: Agent, development: Environment, versions: tuple[Any, Any]
) -> None:
    v1, v2 = versions
    deployment_create(actor=ACTOR, agent=agent, environment=development, version=v2, reason="up")
    current = deployment_current(agent=agent, environment=development)
    assert current is not None
    client = _client(operator)
    assert "Roll back to v1" in client.get(_url("incident", agent, development)).content.decode()

    response = client.post(
        _url("incident_rollback", agent, development),
        {"stabilise-reason": "v2 refunds twice", "stabilise-expected_version": current.sequence},
    )

    assert response.status_code == 302
    now = deployment_current(agent=agent, environment=development)
    assert now is not None and now.version == v1 and now.kind == Deployment.Kind.ROLLBACK
    assert AuditEvent.objects.filter(reason="v2 refunds twice").exists()


def test_rollback__rollout_ended_since_the_panel_was_read__400_stale_and_nothing_changed(
    operator: User, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    # the panel showed no rollout (expected_rollout none) while one runs: refused, not
    # a rollback nobody confirmed
    current = deployment_current(agent=agent, environment=development)
    assert current is not None
    before = _state()

    response = _client(operator).post(
        _url("incident_rollback", agent, development),
        {"stabilise-reason": "why", "stabilise-expected_version": current.sequence},
    )

    assert response.status_code == 400
    assert "nothing was changed" in response.content.decode()
    assert _state() == before


def test_rollback__empty_reason__400_field_error_and_nothing_changed(
    operator: User, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    before = _state()

    response = _client(operator).post(
        _url("incident_rollback", agent, development),
        {
            "stabilise-reason": "",
            "stabilise-rollout": rollout.pk,
            "stabilise-expected_version": rollout.sequence,
        },
    )

    assert response.status_code == 400
    assert 'id="id_stabilise-reason-errors"' in response.content.decode()
    assert _state() == before


def test_pause__running_canary__paused_and_audited(
    operator: User, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    response = _client(operator).post(
        _url("incident_pause", agent, development),
        {
            "stabilise-reason": "looking into refunds",
            "stabilise-rollout": rollout.pk,
            "stabilise-expected_version": rollout.sequence,
        },
    )

    assert response.status_code == 302
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.PAUSED
    assert AuditEvent.objects.get(action="rollout.paused").reason == "looking into refunds"


def test_pause__another_agents_rollout__400_and_nothing_changed(
    operator: User, tenant: Tenant, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    other = AgentFactory(tenant=tenant, slug="hr-bot", name="HR bot")
    before = _state()

    response = _client(operator).post(
        _url("incident_pause", other, development),
        {
            "stabilise-reason": "why",
            "stabilise-rollout": rollout.pk,
            "stabilise-expected_version": rollout.sequence,
        },
    )

    assert response.status_code == 400
    assert "No such rollout of this agent here" in response.content.decode()
    assert _state() == before


def test_propagation__counts_the_runtimes_serving_the_agent_and_stops_polling_when_all_did(
    operator: User, tenant: Tenant, agent: Agent, development: Environment, versions: Any
) -> None:
    token, _ = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=development, name="fleet"
    )
    development.refresh_from_db()
    revision = development.revision
    for name, applied in (("pod-0", revision), ("pod-1", revision - 1)):
        runtime_heartbeat_record(
            token=token, instance_id=name, report="ack", revision=applied, agents=["support-bot"]
        )
    client = _client(operator)
    url = _url("incident_propagation", agent, development) + f"?revision={revision}"

    behind = client.get(url).content.decode()
    runtime_heartbeat_record(
        token=token, instance_id="pod-1", report="ack", revision=revision, agents=["support-bot"]
    )
    done = client.get(url).content.decode()

    assert "1 of 2 runtimes" in behind and "hx-get" in behind
    assert "2 of 2 runtimes" in done and "every runtime acknowledged" in done
    assert "hx-get" not in done


def test_panel__switch_engaged_here__shown_engaged_instead_of_its_button(
    operator: User, agent: Agent, development: Environment, versions: Any
) -> None:
    client = _client(operator)
    for harm in ("tool:lookup_order", "stop"):
        client.post(
            _url("incident_stop_harm", agent, development),
            {"stop-harm": harm, "stop-reason": "why"},
        )

    html = client.get(_url("incident", agent, development)).content.decode()

    assert "lookup_order disabled" in html and 'value="tool:lookup_order"' not in html
    assert "Support bot stopped" in html and 'value="stop"' not in html
    assert 'value="mode:read_only"' in html  # the others are still offered


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("incident_stop_harm", {"stop-harm": "tool:" + "a" * 300, "stop-reason": "x"}),
        ("incident_stop_harm", {"stop-harm": "tool:<script>", "stop-reason": "x"}),
        ("incident_stop_harm", {"stop-harm": "stop", "stop-reason": "nul\x00byte"}),
        ("incident_stop_harm", {"stop-harm": "stop", "stop-reason": "x" * 2001}),
        ("incident_rollback", {"stabilise-reason": "x", "stabilise-rollout": "9" * 30}),
        ("incident_rollback", {"stabilise-reason": "x", "stabilise-expected_version": "-1"}),
        ("incident_pause", {"stabilise-reason": "x", "stabilise-rollout": "abc"}),
        ("incident_pause", {"stabilise-reason": "x", "stabilise-expected_version": "1e99"}),
    ],
    ids=[
        "long-tool",
        "markup-tool",
        "nul-reason",
        "long-reason",
        "huge-rollout",
        "negative-version",
        "text-rollout",
        "float-version",
    ],
)
def test_actions__hostile_input__400_and_nothing_changed(
    action: str,
    body: dict[str, str],
    operator: User,
    agent: Agent,
    development: Environment,
    rollout: Rollout,
) -> None:
    before = _state()

    response = _client(operator).post(_url(action, agent, development), body)

    assert response.status_code == 400
    assert "<script>" not in response.content.decode().split("<main", 1)[-1]
    assert _state() == before


def test_shrink__canary_past_its_first_step__back_one_step_paused_and_audited(
    operator: User, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    grown = rollout_transition(
        actor=ACTOR, rollout_id=rollout.pk, event="advance", reason="ok"
    ).rollout
    page = _client(operator).get(_url("incident", agent, development)).content.decode()
    smaller = grown.plan["steps"][0]["percentage"]
    assert f"Shrink the canary to {smaller:g}%" in page

    response = _client(operator).post(
        _url("incident_shrink", agent, development),
        {
            "stabilise-reason": "refund complaints",
            "stabilise-rollout": rollout.pk,
            "stabilise-expected_version": grown.sequence,
        },
    )

    assert response.status_code == 302
    rollout.refresh_from_db()
    assert (rollout.state, rollout.step_index, rollout.percentage) == ("paused", 0, smaller)
    assert AuditEvent.objects.get(action="rollout.shrunk").reason == "refund complaints"


def test_shrink__first_step__no_button_and_a_post_refused_with_nothing_changed(
    operator: User, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    page = _client(operator).get(_url("incident", agent, development)).content.decode()
    assert "Shrink the canary" not in page
    before = _state()

    response = _client(operator).post(
        _url("incident_shrink", agent, development),
        {
            "stabilise-reason": "why",
            "stabilise-rollout": rollout.pk,
            "stabilise-expected_version": rollout.sequence,
        },
    )

    assert response.status_code == 400
    assert "first step" in response.content.decode()
    assert _state() == before


def test_shrink__viewer__403_and_nothing_changed(
    viewer: User, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    before = _state()

    response = _client(viewer).post(
        _url("incident_shrink", agent, development),
        {"stabilise-reason": "x", "stabilise-rollout": rollout.pk},
    )

    assert response.status_code == 403
    assert _state() == before


def test_shrink__another_on_call_moved_it_first__400_naming_who_and_nothing_more(
    operator: User, tenant: Tenant, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    """Two on-calls on the same panel: the second click, on the version both saw, is refused
    and names who acted first (CONVENTIONS: the refusal names who acted first)."""
    grown = rollout_transition(
        actor=ACTOR, rollout_id=rollout.pk, event="advance", reason="ok"
    ).rollout
    alice = make_user(Role.OPERATOR, tenant, username="alice")
    body = {
        "stabilise-reason": "refund complaints",
        "stabilise-rollout": rollout.pk,
        "stabilise-expected_version": grown.sequence,
    }
    assert _client(alice).post(_url("incident_shrink", agent, development), body).status_code == 302
    before = _state()

    response = _client(operator).post(_url("incident_pause", agent, development), body)

    assert response.status_code == 400
    assert "by alice" in response.content.decode()
    assert _state() == before


def test_stabilise__refused_as_stale__the_redrawn_panel_acts_on_what_it_now_shows(
    operator: User, tenant: Tenant, agent: Agent, development: Environment, rollout: Rollout
) -> None:
    """After a stale refusal the panel is drawn again with the current state; its hidden
    version must be that state's (as ``rebase_if_stale`` does on confirmation pages), or every
    button of the redrawn panel is refused again and the on-call is stuck mid-incident until
    they think of reloading."""
    grown = rollout_transition(
        actor=ACTOR, rollout_id=rollout.pk, event="advance", reason="ok"
    ).rollout
    alice = make_user(Role.OPERATOR, tenant, username="alice")
    seen = {
        "stabilise-reason": "refund complaints",
        "stabilise-rollout": str(rollout.pk),
        "stabilise-expected_version": str(grown.sequence),
    }
    assert _client(alice).post(_url("incident_shrink", agent, development), seen).status_code == 302
    bob = _client(operator)
    refused = bob.post(_url("incident_rollback", agent, development), seen)
    assert refused.status_code == 400
    redrawn = {
        name: refused.content.decode().split(f'name="{name}" value="', 1)[1].split('"', 1)[0]
        for name in ("stabilise-rollout", "stabilise-expected_version")
    }

    again = bob.post(_url("incident_rollback", agent, development), {**seen, **redrawn})

    assert again.status_code == 302
    rollout.refresh_from_db()
    assert rollout.state == "rolled_back"
