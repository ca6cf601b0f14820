"""The release-history migration numbers and classifies existing deployments from their
``previous`` links, so a rollback after upgrading still never walks into a rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.rollouts.models import Deployment as Current
from apps.rollouts.selectors import rollback_plan
from apps.tenancy.models import Tenant

from ..factories import AgentFactory

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"


@pytest.mark.django_db(transaction=True)
def test_release_history_migration__backfills_sequence_and_states(tenant: Tenant) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    source = (DEMO / "support-bot-v1.yaml").read_text()
    versions = [
        bundle_version_push(
            actor=SystemActor("test"),
            agent=agent,
            message=f"b{n}",
            source=source.replace("Answers customer", f"Answers (b{n}) customer"),
        ).version
        for n in (1, 2, 3)
    ]
    production = tenant.environments.get(slug="production")
    executor = MigrationExecutor(connection)
    executor.migrate([("rollouts", "0001_initial")])
    old = executor.loader.project_state([("rollouts", "0001_initial")]).apps
    Deployment = old.get_model("rollouts", "Deployment")
    # The old shape: v1, v2, rollback to v1, v3 (as the old code wrote them).
    previous = None
    for version, kind in ((0, "deploy"), (1, "deploy"), (0, "rollback"), (2, "deploy")):
        previous = Deployment.objects.create(
            agent_id=agent.pk,
            environment_id=production.pk,
            version_id=versions[version].pk,
            previous=previous,
            kind=kind,
            deployed_by_label="old",
            reason="r",
            revision=1,
        )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    rows = list(Current.objects.order_by("id").values_list("sequence", "state"))
    assert rows == [(1, "superseded"), (2, "rolled_back"), (3, "superseded"), (4, "live")]
    plan = rollback_plan(agent=agent, environment=production)
    assert plan.target is not None and plan.target.version == versions[0]
