"""Rollback walks the release history as a state machine: back to the last known-good
version before the current one, never to a version that was rolled back from, refused
when none is left (issue 8, kind 9). Deploy and rollback carry the release-history version
their user saw and the second of two concurrent clicks is refused (issue 9, item 2)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection

from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push
from apps.core.concurrency import StaleVersion
from apps.core.roles import Role
from apps.rollouts.models import Deployment
from apps.rollouts.selectors import deployment_current, rollback_plan
from apps.rollouts.services import deployment_create, deployment_rollback
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory, make_user
from ..races import race

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


@pytest.fixture
def versions(agent: Agent) -> dict[int, BundleVersion]:
    """v1…v5 of the agent: the demo bundle with a different description each."""
    source = (DEMO / "support-bot-v1.yaml").read_text()
    pushed = {}
    for n in range(1, 6):
        pushed[n] = bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=f"build {n}",
            source=source.replace(
                "Answers customer questions", f"Answers customer questions (build {n})"
            ),
        ).version
        assert pushed[n].number == n
    return pushed


def _stable(agent: Agent, environment: Environment) -> int:
    current = deployment_current(agent=agent, environment=environment)
    assert current is not None
    return current.version.number


# Each history is a list of steps: an int deploys that version, "rb" rolls back and the
# expectation after it is the stable version (or "refused").
HISTORIES = [
    pytest.param([2, 3, 4, ("rb", 3), ("rb", 2), ("rb", "refused")], id="v2-v3-v4"),
    pytest.param([1, ("rb", "refused")], id="single-deploy"),
    pytest.param([1, 2, ("rb", 1), 3, ("rb", 1), ("rb", "refused")], id="skips-rolled-back-v2"),
    pytest.param([1, 2, 1, 3, ("rb", 1), ("rb", 2), ("rb", "refused")], id="redeployed-v1"),
    pytest.param([1, 2, 3, ("rb", 2), 4, ("rb", 2), ("rb", 1)], id="deploy-after-rollback"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("steps", HISTORIES)
def test_rollback__history__goes_to_last_known_good_never_into_a_rollback(
    tenant: Tenant, agent: Agent, versions: dict[int, BundleVersion], steps: list[Any]
) -> None:
    production = tenant.environments.get(slug="production")
    for step in steps:
        if isinstance(step, int):
            deployment_create(
                actor=ACTOR,
                agent=agent,
                environment=production,
                version=versions[step],
                reason=f"ship v{step}",
            )
            continue
        _, expected = step
        before = _stable(agent, production)
        count = Deployment.objects.count()
        if expected == "refused":
            with pytest.raises(ValidationError) as exc:
                deployment_rollback(actor=ACTOR, agent=agent, environment=production, reason="bad")
            assert "no known-good version" in exc.value.message_dict["version"][0]
            assert (_stable(agent, production), Deployment.objects.count()) == (before, count)
            continue
        plan = rollback_plan(agent=agent, environment=production)
        assert plan.target is not None and plan.target.version.number == expected
        back = deployment_rollback(actor=ACTOR, agent=agent, environment=production, reason="bad")
        assert (back.version.number, back.kind, back.restores_id) == (
            expected,
            "rollback",
            plan.target.pk,
        )
        assert _stable(agent, production) == expected
        rolled_back = Deployment.objects.get(pk=back.previous_id)
        assert (rolled_back.state, rolled_back.version.number) == ("rolled_back", before)
    # The history stays an explicit, linear state machine: one live row, numbered 1…n.
    chain = list(Deployment.objects.filter(agent=agent, environment=production).order_by("id"))
    assert [d.sequence for d in chain] == list(range(1, len(chain) + 1))
    assert [d.state for d in chain].count("live") == 1 and chain[-1].state == "live"
    assert all(later.previous_id == earlier.pk for earlier, later in itertools.pairwise(chain))


@pytest.mark.django_db
def test_one_live_deployment__database_refuses_a_second(
    tenant: Tenant, agent: Agent, versions: dict[int, BundleVersion]
) -> None:
    production = tenant.environments.get(slug="production")
    first = deployment_create(
        actor=ACTOR, agent=agent, environment=production, version=versions[1], reason="go"
    )
    with pytest.raises(IntegrityError):
        Deployment.objects.create(
            agent=agent,
            environment=production,
            version=versions[2],
            sequence=first.sequence + 1,
            deployed_by_label="x",
            reason="bypassing the service",
            revision=first.revision + 1,
        )


@pytest.mark.django_db
def test_rollback_pages__name_the_target_and_walk_further_back(
    client: Any, operator: Any, tenant: Tenant, agent: Agent, versions: dict[int, BundleVersion]
) -> None:
    production = tenant.environments.get(slug="production")
    for n in (2, 3, 4):
        deployment_create(
            actor=ACTOR, agent=agent, environment=production, version=versions[n], reason="ship"
        )
    client.force_login(operator)
    url = f"/agents/{agent.pk}/environments/{production.pk}/rollback/"
    for current, target in ((4, 3), (3, 2)):
        assert (
            f"Roll back to v{target}"
            in client.get(f"/agents/{agent.pk}/releases/").content.decode()
        )
        page = client.get(url).content.decode()
        assert f"goes back from v{current} to v{target}" in page
        assert f"Roll back {agent.name} in {production.name} to v{target}?" in page
        sequence = deployment_current(agent=agent, environment=production).sequence
        assert f'name="expected_version" value="{sequence}"' in page
        response = client.post(url, {"reason": "refunds spiked", "expected_version": sequence})
        assert response.status_code == 302
        assert _stable(agent, production) == target
    # Nothing known-good is left before v2: the page refuses clearly instead of walking on.
    releases = client.get(f"/agents/{agent.pk}/releases/").content.decode()
    assert "no known-good version to roll back to" in releases
    response = client.get(url, follow=True)
    assert "no known-good version before v2" in response.content.decode()
    assert _stable(agent, production) == 2


@pytest.mark.django_db
def test_rollback_page__stale_version__refused_naming_who_rolled_back_first(
    client: Any, tenant: Tenant, agent: Agent, versions: dict[int, BundleVersion]
) -> None:
    production = tenant.environments.get(slug="production")
    for n in (1, 2, 3):
        deployment_create(
            actor=ACTOR, agent=agent, environment=production, version=versions[n], reason="ship"
        )
    seen = deployment_current(agent=agent, environment=production).sequence
    alice = make_user(Role.OPERATOR, tenant, username="alice")
    bob = make_user(Role.OPERATOR, tenant, username="bob")
    url = f"/agents/{agent.pk}/environments/{production.pk}/rollback/"
    client.force_login(alice)
    assert client.post(url, {"reason": "first", "expected_version": seen}).status_code == 302
    client.force_login(bob)
    for stale in (seen, seen - 1, 0):
        response = client.post(url, {"reason": "second", "expected_version": stale})
        page = response.content.decode()
        assert response.status_code == 200
        assert "was changed by alice" in page and "Nothing was changed" in page
    missing = client.post(url, {"reason": "no version"})
    assert "did not say which version it showed" in missing.content.decode()
    assert _stable(agent, production) == 2
    assert Deployment.objects.filter(kind="rollback").count() == 1


@pytest.mark.django_db
def test_deploy_page__stale_or_missing_seen__refused_naming_who_deployed(
    client: Any, tenant: Tenant, agent: Agent, versions: dict[int, BundleVersion]
) -> None:
    staging = tenant.environments.get(slug="staging")
    alice = make_user(Role.OPERATOR, tenant, username="alice")
    bob = make_user(Role.OPERATOR, tenant, username="bob")
    client.force_login(bob)
    page = client.get(f"/agents/{agent.pk}/deploy/?environment={staging.pk}").content.decode()
    assert f"{staging.pk}:0" in page  # the hidden field carries what the page showed
    deployment_create(
        actor=alice, agent=agent, environment=staging, version=versions[1], reason="a"
    )
    for seen in (f"{staging.pk}:0", f"{staging.pk}:7"):
        response = client.post(
            f"/agents/{agent.pk}/deploy/",
            {"environment": staging.pk, "version": versions[2].pk, "reason": "b", "seen": seen},
        )
        assert response.status_code == 200
        assert "was changed by alice" in response.content.decode()
    for seen in ("", "garbage", "999999:1"):
        response = client.post(
            f"/agents/{agent.pk}/deploy/",
            {"environment": staging.pk, "version": versions[2].pk, "reason": "b", "seen": seen},
        )
        assert "reload it and retry" in response.content.decode()
    assert _stable(agent, staging) == 1
    response = client.post(
        f"/agents/{agent.pk}/deploy/",
        {
            "environment": staging.pk,
            "version": versions[2].pk,
            "reason": "b",
            "seen": f"{staging.pk}:1",
        },
    )
    assert response.status_code == 302
    assert _stable(agent, staging) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("rollback", "rollback"),
        ("deploy", "rollback"),
        ("rollback", "deploy"),
        ("deploy", "deploy"),
    ],
)
def test_two_concurrent_clicks__postgresql__one_wins_the_other_is_told_who(
    tenant: Tenant, agent: Agent, versions: dict[int, BundleVersion], first: str, second: str
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are a PostgreSQL matter; SQLite serialises writers anyway")
    staging = tenant.environments.get(slug="staging")
    for n in (1, 2):
        deployment_create(
            actor=ACTOR, agent=agent, environment=staging, version=versions[n], reason="ship"
        )
    seen = deployment_current(agent=agent, environment=staging).sequence
    alice = make_user(Role.OPERATOR, tenant, username="alice")
    bob = make_user(Role.OPERATOR, tenant, username="bob")

    def click(kind: str, user: Any, version: int) -> Any:
        if kind == "rollback":
            return lambda: deployment_rollback(
                actor=user, agent=agent, environment=staging, reason="r", expected_version=seen
            )
        return lambda: deployment_create(
            actor=user,
            agent=agent,
            environment=staging,
            version=versions[version],
            reason="d",
            expected_version=seen,
        )

    results, errors = race(click(first, alice, 3), click(second, bob, 4))

    assert len(results) == 1 and len(errors) == 1
    error = errors[0]
    assert isinstance(error, StaleVersion)
    winner = results[0].deployed_by_label
    assert error.changed_by == winner and f"was changed by {winner}" in error.messages[0]
    assert error.current_version == seen + 1
    chain = list(Deployment.objects.filter(agent=agent, environment=staging).order_by("id"))
    assert [d.sequence for d in chain] == [1, 2, 3]
    assert [d.state for d in chain][-1] == "live" and [d.state for d in chain].count("live") == 1
    assert _stable(agent, staging) == results[0].version.number
