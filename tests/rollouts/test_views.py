"""The rollout pages: the rollout page and its buttons, the start form, the plan editor, the
list and the one rollback button — permissions (a Viewer sees no button and gets 403 on
POST), stale versions (a clear message, nothing moved) and bad input (field errors,
nothing changed)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.core.roles import Role
from apps.rollouts.models import Rollout, RolloutAnalysis, RolloutPlan
from apps.rollouts.selectors import deployment_current
from apps.rollouts.services import deployment_create, rollout_start, rollout_transition
from apps.telemetry.services import records_ingest
from apps.tenancy.models import Agent, Tenant

from ..factories import AgentFactory, make_user
from ..html import get_form_urls

pytestmark = pytest.mark.django_db
DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


@pytest.fixture
def versions(agent: Agent) -> tuple[Any, Any]:
    v1, v2 = (
        bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=message,
            source=(DEMO / f"support-bot-{name}.yaml").read_text(),
        ).version
        for name, message in (("v1", "baseline"), ("v2", "friendlier"))
    )
    for environment in agent.tenant.environments.all():
        deployment_create(
            actor=ACTOR, agent=agent, environment=environment, version=v1, reason="launch"
        )
    return v1, v2


@pytest.fixture
def rollout(agent: Agent, versions: tuple[Any, Any]) -> Rollout:
    development = agent.tenant.environments.get(slug="development")
    return rollout_start(
        actor=ACTOR,
        agent=agent,
        environment=development,
        candidate=versions[1],
        reason="friendlier tone",
    )


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _state() -> tuple[Any, ...]:
    return (
        list(Rollout.objects.values_list("id", "state", "step_index", "sequence")),
        list(RolloutPlan.objects.values_list("environment_id", "version", "document")),
        AuditEvent.objects.count(),
    )


def test_rollout_page__viewer__sees_the_rollout_but_no_button_and_post_is_refused(
    tenant: Tenant, rollout: Rollout
) -> None:
    viewer = _client(make_user(Role.VIEWER, tenant, username="vera"))
    page = viewer.get(f"/rollouts/{rollout.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Rollout #" in html and "1%" in html
    assert f"/rollouts/{rollout.pk}/rollback/" not in html
    assert f"/rollouts/{rollout.pk}/pause/" not in html
    before = _state()
    for event in ("pause", "rollback", "advance"):
        refused = viewer.post(
            f"/rollouts/{rollout.pk}/{event}/", {"reason": "x", "expected_version": 2}
        )
        assert refused.status_code == 403
    assert _state() == before


def test_rollout_page__operator__buttons_for_the_state_verdicts_timeline_and_convergence(
    tenant: Tenant, operator: User, rollout: Rollout
) -> None:
    RolloutAnalysis.objects.create(
        rollout=rollout,
        tick=timezone.now(),
        step_index=0,
        percentage=1,
        decision="rollback",
        reason="error_rate failed: 3.1x stable",
        candidate_requests=900,
        stable_requests=90000,
        verdicts=[
            {
                "metric": "error_rate",
                "verdict": "FAIL",
                "reason": "candidate error rate 6.0% vs stable 2.0%: above 1.5x",
                "statistic": 12.5,
                "interval": [2.1, 4.4],
                "candidate": {"requests": 900, "events": 54, "value": 0.06},
                "stable": {"requests": 90000, "events": 1800, "value": 0.02},
                "dry_run": False,
                "on_failure": "rollback",
                "critical": True,
            },
            {"metric": "latency_p95", "verdict": "INCONCLUSIVE", "reason": "too few requests"},
        ],
    )
    html = _client(operator).get(f"/rollouts/{rollout.pk}/live/").content.decode()
    for expected in (
        f"/rollouts/{rollout.pk}/advance/",
        f"/rollouts/{rollout.pk}/pause/",
        f"/rollouts/{rollout.pk}/rollback/",
        "candidate error rate 6.0% vs stable 2.0%: above 1.5x",
        "too few requests",
        "INCONCLUSIVE",
        "error_rate failed: 3.1x stable",
        "friendlier tone",  # the timeline's start, with its reason
        "No live runtimes in Development",
    ):
        assert expected in html, expected
    assert f"/rollouts/{rollout.pk}/resume/" not in html  # not paused


def test_rollout_action__pause__moves_audited_with_the_reason(
    tenant: Tenant, operator: User, rollout: Rollout
) -> None:
    client = _client(operator)
    confirm = client.get(f"/rollouts/{rollout.pk}/pause/").content.decode()
    assert "keeps serving 1% of sessions" in confirm
    response = client.post(
        f"/rollouts/{rollout.pk}/pause/",
        {"reason": "waiting for the support team", "expected_version": rollout.sequence},
    )
    assert response.status_code == 302 and response["Location"] == f"/rollouts/{rollout.pk}/"
    rollout.refresh_from_db()
    assert rollout.state == "paused"
    event = AuditEvent.objects.filter(action="rollout.paused").get()
    assert event.reason == "waiting for the support team"


def test_rollout_action__stale_sequence__says_who_moved_it_and_nothing_changes(
    tenant: Tenant, operator: User, rollout: Rollout
) -> None:
    seen = rollout.sequence
    rollout_transition(
        actor=ACTOR, rollout_id=rollout.pk, event="advance", reason="analysis: all PASS"
    )
    before = _state()
    response = _client(operator).post(
        f"/rollouts/{rollout.pk}/rollback/", {"reason": "refunds", "expected_version": seen}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "was changed" in html and "Nothing was changed" in html
    assert _state() == before
    # the page now states the current effect (10%) and carries the current version
    assert "now serving 10% of sessions" in html
    assert f'value="{seen + 1}"' in html


def test_rollout_action__no_reason__field_error_and_nothing_changes(
    operator: User, rollout: Rollout
) -> None:
    before = _state()
    response = _client(operator).post(
        f"/rollouts/{rollout.pk}/abort/", {"reason": "  ", "expected_version": rollout.sequence}
    )
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert _state() == before


def test_rollout_action__unknown_event__404(operator: User, rollout: Rollout) -> None:
    assert _client(operator).post(f"/rollouts/{rollout.pk}/explode/").status_code == 404


def test_one_rollback_button__agent_page_with_a_running_rollout__rolls_it_back(
    tenant: Tenant, operator: User, agent: Agent, rollout: Rollout
) -> None:
    client = _client(operator)
    releases = client.get(f"/agents/{agent.pk}/releases/").content.decode()
    development = rollout.environment
    url = f"/agents/{agent.pk}/environments/{development.pk}/rollback/"
    assert url in releases and "Roll back to v1" in releases
    confirm = client.get(url).content.decode()
    assert "goes back to v1" in confirm
    response = client.post(url, {"reason": "refunds spiking", "expected_version": rollout.sequence})
    assert response["Location"] == f"/rollouts/{rollout.pk}/"
    rollout.refresh_from_db()
    assert rollout.state == "rolled_back"
    assert deployment_current(agent=agent, environment=development).version.number == 1


def test_one_rollback_button__the_rollout_shown_ended_meanwhile__nothing_else_reverted(
    tenant: Tenant, operator: User, agent: Agent, rollout: Rollout, versions: tuple[Any, Any]
) -> None:
    # The page offered "roll back the rollout"; the analysis rolled it back first. The click
    # must not become a revert of the stable version, which nobody confirmed, even when the
    # rollout's and the deployment's version numbers happen to be equal.
    client = _client(operator)
    development = rollout.environment
    releases = client.get(f"/agents/{agent.pk}/releases/").content.decode()
    url = f"/agents/{agent.pk}/environments/{development.pk}/rollback/?rollout={rollout.pk}"
    assert url in get_form_urls(releases)  # the "Roll back to vN" button
    client.get(url)
    rollout_transition(actor=ACTOR, rollout_id=rollout.pk, event="rollback", reason="analysis")
    rollout.refresh_from_db()
    live = deployment_current(agent=agent, environment=development)
    before = _state()
    response = client.post(url, {"reason": "refunds", "expected_version": live.sequence})
    assert response.status_code == 200
    assert "meanwhile" in response.content.decode()
    assert _state() == before
    assert deployment_current(agent=agent, environment=development) == live


def test_one_rollback_button__a_rollout_started_meanwhile__not_rolled_back_unseen(
    tenant: Tenant, operator: User, agent: Agent, versions: tuple[Any, Any]
) -> None:
    client = _client(operator)
    staging = tenant.environments.get(slug="staging")
    deployment_create(
        actor=ACTOR, agent=agent, environment=staging, version=versions[1], reason="x"
    )
    url = f"/agents/{agent.pk}/environments/{staging.pk}/rollback/?rollout=none"
    assert "goes back from v2 to v1" in client.get(url).content.decode()
    live = deployment_current(agent=agent, environment=staging)
    assert live is not None
    response = client.post(url, {"reason": "bad", "expected_version": live.sequence})
    assert response.status_code == 302  # nothing changed in between: the revert happens
    assert deployment_current(agent=agent, environment=staging).version == versions[0]


def test_rollout_start__staging_gate_fails__shown_before_submit_and_refused(
    tenant: Tenant, operator: User, agent: Agent, versions: tuple[Any, Any]
) -> None:
    client = _client(operator)
    staging = tenant.environments.get(slug="staging")
    page = client.get(f"/agents/{agent.pk}/rollouts/new/?version=2").content.decode()
    assert "has not completed a rollout in Development" in page
    before = _state()
    response = client.post(
        f"/agents/{agent.pk}/rollouts/new/",
        {"version": 2, "environment": staging.pk, "reason": "ship it"},
    )
    assert response.status_code == 200
    assert "has not completed a rollout in Development" in response.content.decode()
    assert "override_reason" not in response.content.decode()  # not an Admin
    assert _state() == before


def test_rollout_start__admin_overrides_the_gate_with_a_reason(
    tenant: Tenant, admin: User, agent: Agent, versions: tuple[Any, Any]
) -> None:
    staging = tenant.environments.get(slug="staging")
    response = _client(admin).post(
        f"/agents/{agent.pk}/rollouts/new/",
        {
            "version": 2,
            "environment": staging.pk,
            "reason": "hotfix",
            "override_reason": "security fix, evaluated offline",
        },
    )
    rollout = Rollout.objects.get()
    assert response["Location"] == f"/rollouts/{rollout.pk}/"
    assert rollout.gate_override == "security fix, evaluated offline"


def test_rollout_start__production__asks_for_confirmation_first(
    tenant: Tenant, admin: User, agent: Agent, versions: tuple[Any, Any]
) -> None:
    production = tenant.environments.get(slug="production")
    form = {
        "version": 2,
        "environment": production.pk,
        "reason": "go",
        "override_reason": "approved by the change board",
        "tenants": "acme, globex",
    }
    client = _client(admin)
    first = client.post(f"/agents/{agent.pk}/rollouts/new/", form)
    assert first.status_code == 200 and "Start in production?" in first.content.decode()
    assert not Rollout.objects.exists()
    confirmed = client.post(f"/agents/{agent.pk}/rollouts/new/", {**form, "confirmed": "on"})
    assert confirmed.status_code == 302
    rollout = Rollout.objects.get()
    assert rollout.constraints == [
        {"contextName": "tenantId", "operator": "IN", "values": ["acme", "globex"]}
    ]


def test_rollout_start__development__starts_at_the_first_step(
    tenant: Tenant, operator: User, agent: Agent, versions: tuple[Any, Any]
) -> None:
    development = tenant.environments.get(slug="development")
    response = _client(operator).post(
        f"/agents/{agent.pk}/rollouts/new/",
        {
            "version": 2,
            "environment": development.pk,
            "reason": "friendlier",
            "stickiness": "userId",
        },
    )
    rollout = Rollout.objects.get()
    assert response["Location"] == f"/rollouts/{rollout.pk}/"
    assert (rollout.state, rollout.percentage, rollout.stickiness) == ("canary", 1.0, "userId")


def _plan_post(version: int, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "expected_version": version,
        "reason": "tighter",
        "shadow_percentage": 0,
        "shadow_min_dwell_s": 300,
        "shadow_min_requests": 200,
        "failure_limit": 2,
        "alpha": 0.001,
        "guardrail_max_error_rate": 0.25,
        "guardrail_min_requests": 20,
        "stickiness": "sessionId",
        "steps-TOTAL_FORMS": 3,
        "steps-INITIAL_FORMS": 3,
        "steps-MIN_NUM_FORMS": 0,
        "steps-MAX_NUM_FORMS": 20,
        "metrics-TOTAL_FORMS": 1,
        "metrics-INITIAL_FORMS": 1,
        "metrics-MIN_NUM_FORMS": 0,
        "metrics-MAX_NUM_FORMS": 1000,
        "metrics-0-metric": "error_rate",
        "metrics-0-enabled": "on",
        "metrics-0-tolerated_ratio": 1.5,
        "metrics-0-min_effect": 0.005,
        "metrics-0-on_failure": "rollback",
        "metrics-0-critical": "on",
    }
    for i, (percentage, auto) in enumerate(((2, True), (20, True), (60, False))):
        data[f"steps-{i}-percentage"] = percentage
        data[f"steps-{i}-min_dwell_s"] = 120
        data[f"steps-{i}-min_requests"] = 50
        if auto:
            data[f"steps-{i}-auto_advance"] = "on"
    data.update(changes)
    return data


def test_plan_edit__valid__saved_with_the_next_version(tenant: Tenant, operator: User) -> None:
    staging = tenant.environments.get(slug="staging")
    client = _client(operator)
    page = client.get(f"/environments/{staging.pk}/rollout-plan/").content.decode()
    assert "1% → 10% → 50% → 100%" in page  # the default plan
    response = client.post(f"/environments/{staging.pk}/rollout-plan/", _plan_post(1))
    assert response.status_code == 302
    plan = RolloutPlan.objects.get(environment=staging)
    assert plan.version == 2
    assert [s["percentage"] for s in plan.document["steps"]] == [2, 20, 60]
    assert plan.document["steps"][2]["auto_advance"] is False
    assert [m["metric"] for m in plan.document["metrics"]] == ["error_rate"]
    assert plan.document["alpha"] == 0.001
    again = client.get(f"/environments/{staging.pk}/rollout-plan/").content.decode()
    assert 'value="0.001"' in again


def test_plan_edit__steps_not_increasing__field_error_on_that_step_and_nothing_changes(
    tenant: Tenant, operator: User
) -> None:
    staging = tenant.environments.get(slug="staging")
    before = _state()
    response = _client(operator).post(
        f"/environments/{staging.pk}/rollout-plan/",
        _plan_post(1, **{"steps-1-percentage": 1, "metrics-0-tolerated_ratio": 0.5, "alpha": 0.5}),
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Each step must send more traffic than the one before." in html
    assert "Enter a value from 1.01 to 100." in html
    assert "Enter a value from 0.0001 to 0.2." in html
    assert _state() == before


def test_plan_edit__stale_version__says_who_changed_it_and_nothing_changes(
    tenant: Tenant, operator: User
) -> None:
    staging = tenant.environments.get(slug="staging")
    client = _client(operator)
    assert (
        client.post(f"/environments/{staging.pk}/rollout-plan/", _plan_post(1)).status_code == 302
    )
    before = _state()
    response = client.post(
        f"/environments/{staging.pk}/rollout-plan/",
        _plan_post(1, **{"steps-0-percentage": 5}),
    )
    html = response.content.decode()
    assert "was changed by olivia-operator" in html and "Nothing was changed" in html
    assert _state() == before


def test_plan_edit__viewer__reads_it_but_post_is_403(tenant: Tenant) -> None:
    staging = tenant.environments.get(slug="staging")
    viewer = _client(make_user(Role.VIEWER, tenant, username="vera"))
    page = viewer.get(f"/environments/{staging.pk}/rollout-plan/").content.decode()
    assert "Your role may read this plan, not change it." in page
    assert "Save the plan" not in page
    before = _state()
    refused = viewer.post(f"/environments/{staging.pk}/rollout-plan/", _plan_post(1))
    assert refused.status_code == 403
    assert _state() == before


def test_rollout_list__filters_and_empty_state(
    tenant: Tenant, operator: User, agent: Agent, rollout: Rollout
) -> None:
    client = _client(operator)
    html = client.get("/rollouts/").content.decode()
    assert f"/rollouts/{rollout.pk}/" in html
    assert f"/rollouts/{rollout.pk}/" in client.get("/rollouts/?state=active").content.decode()
    none = client.get("/rollouts/?state=completed").content.decode()
    assert "No rollout matches these filters." in none


def test_rollout_list__nothing_yet__says_how_to_start_one(operator: User) -> None:
    html = _client(operator).get("/rollouts/").content.decode()
    assert "No rollouts yet." in html and "Start rollout" in html


def test_rollout_charts__records_of_both_sides__candidate_stable_and_the_band(
    tenant: Tenant, operator: User, agent: Agent, rollout: Rollout
) -> None:
    token, _ = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=rollout.environment, name="fleet"
    )
    now = timezone.now()
    records = [
        {
            "request_id": f"r-{variant}-{i}",
            "agent": agent.slug,
            "session_id": f"s-{i}",
            "variant": variant,
            "version_digest": version.digest,
            # after the rollout started: the charts begin at its minute
            "started_at": now.isoformat(),
            "latency_ms": 100 + i,
            "cost_usd": "0.01",
            "outcome": "error" if i % 10 == 0 else "success",
        }
        for variant, version in (("stable", rollout.baseline), ("candidate", rollout.candidate))
        for i in range(20)
    ]
    assert not records_ingest(token=token, records=records).rejected
    html = _client(operator).get(f"/rollouts/{rollout.pk}/charts/").content.decode()
    assert html.count("data-plotly-figure") >= 4
    assert "tolerated band up to stable x 1.5" in html
    assert "candidate" in html


def test_rollout_pages__query_budget__list_and_live_part_stay_cheap(
    tenant: Tenant,
    operator: User,
    agent: Agent,
    rollout: Rollout,
    django_assert_max_num_queries: Any,
) -> None:
    client = _client(operator)
    client.get("/rollouts/")  # warm the session and permission caches
    for n in range(3):
        RolloutAnalysis.objects.create(
            rollout=rollout,
            tick=timezone.now() - timedelta(seconds=30 * n),
            step_index=0,
            percentage=1,
            decision="wait",
            reason="too few requests",
        )
    with django_assert_max_num_queries(16):
        client.get("/rollouts/")
    with django_assert_max_num_queries(16):
        client.get(f"/rollouts/{rollout.pk}/live/")


def test_rollout_action__advance_from_the_last_step__says_complete(
    operator: User, rollout: Rollout
) -> None:
    for _ in range(2):
        rollout_transition(actor=ACTOR, rollout_id=rollout.pk, event="advance", reason="PASS")
    client = _client(operator)
    live = client.get(f"/rollouts/{rollout.pk}/live/").content.decode()
    assert "Complete…" in live and "Advance…" not in live
    confirm = client.get(f"/rollouts/{rollout.pk}/advance/").content.decode()
    assert "becomes the stable version of Support bot in Development" in confirm


def test_rollout_live__ended_and_nothing_left_to_watch__stops_the_polling(
    operator: User, rollout: Rollout
) -> None:
    client = _client(operator)
    assert client.get(f"/rollouts/{rollout.pk}/live/").status_code == 200  # running: poll on
    rollout_transition(actor=ACTOR, rollout_id=rollout.pk, event="abort", reason="not today")
    ended = client.get(f"/rollouts/{rollout.pk}/live/")
    assert ended.status_code == 286  # htmx: stop polling
    assert "not reached" in ended.content.decode()


def test_rollout_steps__plan_with_shadow__shadow_first_then_steps_then_100(
    tenant: Tenant, operator: User, agent: Agent, versions: tuple[Any, Any]
) -> None:
    from apps.rollouts.selectors import rollout_steps
    from apps.rollouts.services import rollout_plan_set

    development = tenant.environments.get(slug="development")
    rollout_plan_set(
        actor=ACTOR,
        environment=development,
        document={"shadow": {"percentage": 5}, "steps": [{"percentage": 20}]},
        reason="shadow first",
    )
    rollout = rollout_start(
        actor=ACTOR, agent=agent, environment=development, candidate=versions[1], reason="go"
    )
    steps = [(s.label, s.state) for s in rollout_steps(rollout)]
    assert steps == [("shadow 5%", "current"), ("20%", "next"), ("100%", "next")]
    rollout_transition(actor=ACTOR, rollout_id=rollout.pk, event="advance", reason="ok")
    rollout.refresh_from_db()
    steps = [(s.label, s.state) for s in rollout_steps(rollout)]
    assert steps == [("shadow 5%", "done"), ("20%", "current"), ("100%", "next")]


def test_plan_edit__blank_row_adds_a_step_and_remove_drops_one(
    tenant: Tenant, operator: User
) -> None:
    staging = tenant.environments.get(slug="staging")
    data = _plan_post(
        1,
        **{
            "steps-TOTAL_FORMS": 4,
            "steps-3-percentage": 80,
            "steps-3-min_dwell_s": 60,
            "steps-3-min_requests": 10,
            "steps-0-DELETE": "on",
        },
    )
    response = _client(operator).post(f"/environments/{staging.pk}/rollout-plan/", data)
    assert response.status_code == 302
    plan = RolloutPlan.objects.get(environment=staging)
    assert [s["percentage"] for s in plan.document["steps"]] == [20, 60, 80]


@pytest.mark.parametrize(
    "counts",
    [
        {"metrics-TOTAL_FORMS": -1},
        {"steps-TOTAL_FORMS": -1},
        {"steps-INITIAL_FORMS": -5},
    ],
)
def test_plan_edit__negative_row_counts__refused_in_words_nothing_changes(
    tenant: Tenant, operator: User, counts: dict[str, int]
) -> None:
    """A negative row count reads as "no rows" to Django: the plan would lose its metrics
    (or steps) silently."""
    staging = tenant.environments.get(slug="staging")
    before = _state()

    response = _client(operator).post(
        f"/environments/{staging.pk}/rollout-plan/", _plan_post(1, **counts)
    )

    assert response.status_code == 200
    assert "were not sent whole: reload the page and retry" in response.content.decode()
    assert _state() == before


def test_version_page__start_rollout_link_for_operators_only(
    tenant: Tenant, operator: User, agent: Agent, versions: tuple[Any, Any]
) -> None:
    url = f"/bundles/agents/{agent.pk}/v2/"
    link = f"/agents/{agent.pk}/rollouts/new/?version=2"
    assert link in _client(operator).get(url).content.decode()
    viewer = _client(make_user(Role.VIEWER, tenant, username="vera"))
    assert link not in viewer.get(url).content.decode()


def test_rollout_list__sorted_by_a_column__links_toggle_the_direction(
    operator: User, rollout: Rollout
) -> None:
    client = _client(operator)
    html = client.get("/rollouts/?state=active&sort=agent").content.decode()
    assert 'aria-sort="ascending"' in html
    assert "?state=active&amp;sort=-agent" in html  # clicking again: descending
    assert f"/rollouts/{rollout.pk}/" in html
    assert client.get("/rollouts/?sort=password").status_code == 200  # unknown: ignored


def test_interval_filter__pair_object_or_none() -> None:
    from apps.rollouts.templatetags.rollouts import interval, number

    assert interval([2.13456, 4.4]) == "[2.135, 4.4]"
    assert interval({"low": 0.5, "high": None}) == "[0.5, —]"
    assert interval(None) == "—"
    assert number(None) == "—" and number(12.5) == "12.5"


def test_rollout_list__nothing_yet__operator_told_where_start_rollout_really_is(
    operator: User, agent: Agent, versions: tuple[Any, Any]
) -> None:
    html = _client(operator).get("/rollouts/").content.decode()
    empty = html[html.index('data-testid="rollouts-empty"') :]
    assert f'href="/agents/{agent.pk}/"' in empty and "Start rollout…" in empty
    assert "deploy a first version" in empty
    # and the button it names exists where it says, once the agent has a stable version
    agent_page = _client(operator).get(f"/agents/{agent.pk}/releases/").content.decode()
    assert "Start rollout…" in agent_page


def test_rollout_list__nothing_yet__viewer_not_sent_to_a_button_it_lacks(
    tenant: Tenant, viewer: User, agent: Agent
) -> None:
    html = _client(viewer).get("/rollouts/").content.decode()
    empty = html[html.index('data-testid="rollouts-empty"') :]
    assert "Start rollout" not in empty
    assert "Operators and Admins start rollouts" in empty


@pytest.mark.parametrize(
    "query", ["version=99999", "version=abc", "environment=99999", "environment=x"]
)
def test_deploy_and_rollout_start__query_naming_no_version_or_environment__404(
    operator: User, agent: Agent, versions: tuple[Any, Any], query: str
) -> None:
    client = _client(operator)
    assert client.get(f"/agents/{agent.pk}/deploy/?{query}").status_code == 404
    assert client.get(f"/agents/{agent.pk}/rollouts/new/?{query}").status_code == 404


def test_rollout_action__shrink__offered_past_the_first_step_back_one_step_paused(
    tenant: Tenant, operator: User, rollout: Rollout
) -> None:
    client = _client(operator)
    assert (
        f"/rollouts/{rollout.pk}/shrink/"
        not in client.get(f"/rollouts/{rollout.pk}/live/").content.decode()
    )
    grown = rollout_transition(
        actor=ACTOR, rollout_id=rollout.pk, event="advance", reason="all PASS"
    ).rollout
    assert (
        f"/rollouts/{rollout.pk}/shrink/"
        in client.get(f"/rollouts/{rollout.pk}/live/").content.decode()
    )
    confirm = client.get(f"/rollouts/{rollout.pk}/shrink/").content.decode()
    assert "to 1%" in confirm and "paused" in confirm

    response = client.post(
        f"/rollouts/{rollout.pk}/shrink/",
        {"reason": "refund complaints", "expected_version": grown.sequence},
    )

    assert response.status_code == 302
    rollout.refresh_from_db()
    assert (rollout.state, rollout.step_index, rollout.percentage) == ("paused", 0, 1.0)
    assert AuditEvent.objects.get(action="rollout.shrunk").reason == "refund complaints"


@pytest.mark.parametrize("paused_from", ["canary-first-step", "shadow"])
def test_rollout_action__shrink_the_service_would_refuse__page_says_why_and_nothing_changes(
    operator: User, rollout: Rollout, paused_from: str
) -> None:
    """A hand-typed or bookmarked shrink URL of a canary at its first step (or paused before
    its canary) must not state an effect ("back to the previous step") that will not happen:
    the page says what the service would answer."""
    if paused_from == "shadow":
        Rollout.objects.filter(pk=rollout.pk).update(state="paused", paused_from="shadow")

    confirm = _client(operator).get(f"/rollouts/{rollout.pk}/shrink/").content.decode()

    assert "Nothing will change" in confirm
    assert "the previous step" not in confirm
