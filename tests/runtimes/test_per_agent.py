"""Runtimes serving different agents in one environment: each agent's counts (releases row,
rollout page, kill switch propagation, Runtimes page, convergence badge) count only the
runtimes serving it; a runtime that reports no agent counts for every agent, shown as "all"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.flags.services.kill_switches import kill_switch_engage
from apps.rollouts.services import deployment_create, rollout_start
from apps.runtimes.models import RuntimeInstance
from apps.runtimes.selectors import convergence_for, propagation_of
from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.services import environment_revision_bump

from ..factories import AgentFactory

pytestmark = pytest.mark.django_db
ACTOR = SystemActor("test")
DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"


@pytest.fixture
def development(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="development")


@pytest.fixture
def support(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


@pytest.fixture
def refund(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="refund-agent", name="Refund agent")


@pytest.fixture
def fleet_token(tenant: Tenant, development: Environment) -> str:
    return runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=development, name="shared fleet"
    )[1]


@pytest.fixture
def support_token(tenant: Tenant, development: Environment, support: Agent) -> str:
    return runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=development, agent=support, name="support only"
    )[1]


def _beat(token: str, instance_id: str, **body: Any) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=token)
    response = client.post(
        "/api/runtime/v1/heartbeat", {"instance_id": instance_id, **body}, format="json"
    )
    assert response.status_code == 200, response.content
    return response


def _served(instance_id: str) -> set[str]:
    instance = RuntimeInstance.objects.get(instance_id=instance_id)
    return set(instance.served_agents.values_list("slug", flat=True))


@pytest.fixture
def fleet(
    development: Environment,
    support: Agent,
    refund: Agent,
    fleet_token: str,
    support_token: str,
) -> Environment:
    """Development at revision R: 3 runtimes of support-bot (one by a scoped token), 2 of
    refund-agent by ``agents`` (one behind), 1 of refund-agent by its digests, 1 that
    reports no agent (counted for both)."""
    with transaction.atomic():
        current = environment_revision_bump(environment_id=development.pk)
    development.refresh_from_db()
    ack = {"status": "ack", "revision": current}
    _beat(fleet_token, "sb-1", agents=["support-bot"], **ack)
    _beat(fleet_token, "sb-2", agents=["support-bot"], **ack)
    # A token scoped to support-bot serves support-bot whatever the runtime says.
    _beat(support_token, "sb-scoped", agents=["refund-agent"], **ack)
    _beat(fleet_token, "ra-1", agents=["refund-agent"], **ack)
    _beat(fleet_token, "ra-behind", agents=["refund-agent"], status="ack", revision=current - 1)
    _beat(
        fleet_token,
        "ra-digests",
        digests={"refund-agent": "d1", "refund-agent:candidate": "d2"},
        **ack,
    )
    _beat(fleet_token, "old-runtime", **ack)
    return development


def test_heartbeat__agents_digests_scoped_token_or_nothing__served_agents_stored(
    fleet: Environment,
) -> None:
    assert _served("sb-1") == {"support-bot"}
    assert _served("sb-scoped") == {"support-bot"}
    assert _served("ra-1") == {"refund-agent"}
    assert _served("ra-digests") == {"refund-agent"}
    assert _served("old-runtime") == set()


def test_heartbeat__later_beat_without_agents__keeps_what_it_said(
    fleet: Environment, fleet_token: str
) -> None:
    _beat(fleet_token, "sb-1")

    assert _served("sb-1") == {"support-bot"}


def test_heartbeat__agents_change__replaced_and_unknown_slug_ignored(
    fleet: Environment, fleet_token: str
) -> None:
    _beat(fleet_token, "sb-1", agents=["refund-agent", "support-bot", "no-such-agent"])

    assert _served("sb-1") == {"refund-agent", "support-bot"}


@pytest.mark.parametrize(
    "body",
    [
        {"agents": ["no-such-agent"]},
        {"agents": ["no-such-agent", "other-typo"]},
        {"digests": {"no-such-agent": "d1"}},
        {"digests": {"no-such-agent:candidate": "d1"}},
    ],
)
def test_heartbeat__only_unknown_slugs__ignored_keeps_what_it_said(
    fleet: Environment, fleet_token: str, body: dict[str, Any]
) -> None:
    """Unknown slugs are ignored: a heartbeat naming only those says nothing, so the runtime
    keeps the agents it said before; it never turns into one counted for every agent."""
    _beat(fleet_token, "sb-1", **body)
    _beat(fleet_token, "brand-new", **body)

    assert _served("sb-1") == {"support-bot"}
    assert _served("brand-new") == set()  # never said a known agent: counted for all


@pytest.mark.parametrize(
    "agents",
    [["x"] * 51, [""], ["a\x00b"], "support-bot", [{"slug": "x"}], [["x"]]],
)
def test_heartbeat__bad_agents__400_naming_the_field_nothing_stored(
    development: Environment, fleet_token: str, agents: Any
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=fleet_token)

    response = client.post(
        "/api/runtime/v1/heartbeat", {"instance_id": "pod-x", "agents": agents}, format="json"
    )

    assert response.status_code == 400
    assert any(key.startswith("agents") for key in response.json()["errors"])
    assert not RuntimeInstance.objects.filter(instance_id="pod-x").exists()


def test_convergence__per_agent__counts_only_runtimes_serving_it(
    fleet: Environment, support: Agent, refund: Agent
) -> None:
    everyone = convergence_for(environments=[fleet])[0]
    of_support = convergence_for(environments=[fleet], agent=support)[0]
    of_refund = convergence_for(environments=[fleet], agent=refund)[0]

    assert (everyone.live, everyone.on_revision) == (7, 6)
    # sb-1, sb-2, sb-scoped and the one that reports no agent
    assert (of_support.live, of_support.on_revision, of_support.unreported) == (4, 4, 1)
    # ra-1, ra-behind, ra-digests and the one that reports no agent
    assert (of_refund.live, of_refund.on_revision, of_refund.unreported) == (4, 3, 1)
    assert of_support.converged and not of_refund.converged


def test_propagation__per_agent__counts_only_runtimes_serving_it(
    fleet: Environment, support: Agent, refund: Agent
) -> None:
    revision = fleet.revision

    of_support = propagation_of(environment=fleet, revision=revision, agent=support)
    of_refund = propagation_of(environment=fleet, revision=revision, agent=refund)

    assert (of_support.acknowledged, of_support.live) == (4, 4)
    assert (of_refund.acknowledged, of_refund.live) == (3, 4)


def test_agent_releases_row__two_agents_one_environment__each_counts_its_runtimes(
    fleet: Environment, operator: Any, support: Agent, refund: Agent
) -> None:
    client = Client()
    client.force_login(operator)
    revision = fleet.revision

    support_row = client.get(f"/agents/{support.pk}/releases/").content.decode()
    refund_row = client.get(f"/agents/{refund.pk}/releases/").content.decode()

    assert f"4/4 on revision {revision}" in support_row
    assert f"3/4 on revision {revision}" in refund_row
    assert "1 serving all" in refund_row
    assert f"/runtimes/?agent={refund.pk}" in refund_row


def test_convergence_badge_view__agent_param__counts_that_agent(
    fleet: Environment, operator: Any, refund: Agent, other_tenant: Tenant
) -> None:
    client = Client()
    client.force_login(operator)
    url = f"/runtimes/environments/{fleet.pk}/convergence/"

    assert "7/7 on revision" not in client.get(url).content.decode()
    assert f"6/7 on revision {fleet.revision}" in client.get(url).content.decode()
    assert (
        f"3/4 on revision {fleet.revision}"
        in client.get(f"{url}?agent={refund.pk}").content.decode()
    )
    foreign = other_tenant.agents.get()
    assert client.get(f"{url}?agent={foreign.pk}").status_code == 404
    assert client.get(f"{url}?agent=abc").status_code == 404


def test_propagation_view__kill_switch_of_one_agent__counts_that_agent(
    fleet: Environment, operator: Any, refund: Agent, tenant: Tenant
) -> None:
    switch = kill_switch_engage(
        actor=operator,
        kind="agent_stopped",
        scope="agent",
        reason="refunds look wrong",
        tenant=tenant,
        agent=refund,
    )
    client = Client()
    client.force_login(operator)
    revision = switch.engaged_revisions[str(fleet.pk)]

    page = client.get("/flags/kill-switches/").content.decode()
    fragment = client.get(
        f"/runtimes/propagation/?environment={fleet.pk}&revision={revision}&agent={refund.pk}"
    ).content.decode()

    assert f"agent={refund.pk}" in page
    # nobody applied the kill switch's revision yet: 0 of the 4 refund-agent runtimes
    assert f"0/4 runtimes on revision {revision}" in fragment
    assert "runtimes serving Refund agent" in fragment


def test_runtimes_page__agents_column_and_agent_filter(
    fleet: Environment, operator: Any, support: Agent, refund: Agent
) -> None:
    client = Client()
    client.force_login(operator)

    overview = client.get("/runtimes/").content.decode()
    everyone = client.get(f"/runtimes/environments/{fleet.pk}/live/").content.decode()
    of_refund = client.get(
        f"/runtimes/environments/{fleet.pk}/live/?agent={refund.pk}"
    ).content.decode()
    filtered_overview = client.get(f"/runtimes/?agent={refund.pk}").content.decode()

    assert f'<option value="{refund.pk}"' in overview
    assert "Refund agent</td>" in everyone and "Support bot</td>" in everyone
    assert "all <small" in everyone  # the runtime that reports no agent
    assert "ra-behind" in of_refund and "old-runtime" in of_refund
    assert "sb-1" not in of_refund and "sb-scoped" not in of_refund
    assert f"/live/?agent={refund.pk}" in filtered_overview
    assert "runtimes serving Refund agent" in of_refund


def test_rollout_page__convergence_counts_the_rollout_agent(
    fleet: Environment, operator: Any, support: Agent, fleet_token: str
) -> None:
    v1, v2 = (
        bundle_version_push(
            actor=ACTOR,
            agent=support,
            message=name,
            source=(DEMO / f"support-bot-{name}.yaml").read_text(),
        ).version
        for name in ("v1", "v2")
    )
    deployment_create(actor=ACTOR, agent=support, environment=fleet, version=v1, reason="go")
    rollout = rollout_start(
        actor=ACTOR, agent=support, environment=fleet, candidate=v2, reason="friendlier"
    )
    fleet.refresh_from_db()
    for instance_id in ("sb-1", "ra-1"):
        _beat(fleet_token, instance_id, status="ack", revision=fleet.revision)
    client = Client()
    client.force_login(operator)

    page = client.get(f"/rollouts/{rollout.pk}/live/").content.decode()

    # support-bot: sb-1 (applied), sb-2, sb-scoped, old-runtime; ra-1 does not count
    assert f"1/4 runtimes on revision {fleet.revision}" in page
    assert "runtimes serving Support bot" in page


def test_api_runtimes__agents_served_and_agent_filter(
    fleet: Environment, operator: Any, refund: Agent
) -> None:
    client = APIClient()
    client.force_authenticate(operator)

    everyone = client.get("/api/v1/runtimes/", {"environment": fleet.pk}).json()["results"]
    of_refund = client.get("/api/v1/runtimes/", {"agent": refund.pk}).json()["results"]
    bad = client.get("/api/v1/runtimes/", {"agent": "x"})

    by_id = {r["instance_id"]: r for r in everyone}
    assert by_id["sb-scoped"]["agents"] == ["support-bot"]
    assert by_id["ra-digests"]["agents"] == ["refund-agent"]
    assert (by_id["old-runtime"]["agents"], by_id["old-runtime"]["serves_all"]) == ([], True)
    assert by_id["ra-behind"]["status"] == "behind"
    assert {r["instance_id"] for r in of_refund} == {
        "ra-1",
        "ra-behind",
        "ra-digests",
        "old-runtime",
    }
    assert bad.status_code == 400 and "agent" in bad.json()["errors"]


def test_api_convergence__per_agent__counts_only_its_runtimes(
    fleet: Environment, operator: Any, support: Agent, refund: Agent, other_tenant: Tenant
) -> None:
    client = APIClient()
    client.force_authenticate(operator)

    def row(**params: Any) -> dict[str, Any]:
        rows = client.get("/api/v1/runtimes/convergence/", params).json()["results"]
        return next(r for r in rows if r["environment"] == fleet.pk)

    assert (row()["live"], row()["on_revision"], row()["agent"]) == (7, 6, None)
    of_refund = row(agent=refund.pk)
    assert (of_refund["agent"], of_refund["live"], of_refund["on_revision"]) == (
        "refund-agent",
        4,
        3,
    )
    assert (of_refund["unreported"], of_refund["converged"]) == (1, False)
    assert row(agent=support.pk)["converged"] is True
    foreign = other_tenant.agents.get()
    refused = client.get("/api/v1/runtimes/convergence/", {"agent": foreign.pk})
    assert refused.status_code == 400 and "agent" in refused.json()["errors"]
