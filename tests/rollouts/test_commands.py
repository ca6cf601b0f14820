"""``./manage.py rollout``: start (gates, override, stickiness, tenant constraint), status,
the moves and the one-click rollback, through the same services as the UI and the API."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion
from apps.bundles.services import bundle_version_push
from apps.rollouts.models import Deployment, Rollout
from apps.rollouts.services import deployment_create
from apps.tenancy.models import Agent, Tenant

from ..factories import AgentFactory

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")
pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    source = (DEMO / "support-bot-v1.yaml").read_text()
    for n in (1, 2):
        bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=f"build {n}",
            source=source.replace("Answers customer", f"Answers (build {n}) customer"),
        )
    for slug in ("development", "staging"):
        deployment_create(
            actor=ACTOR,
            agent=agent,
            environment=tenant.environments.get(slug=slug),
            version=BundleVersion.objects.get(agent=agent, number=1),
            reason="first",
        )
    return agent


def rollout(*args: str) -> str:
    out = StringIO()
    call_command("rollout", *args, stdout=out)
    return out.getvalue()


SCOPE = ("--agent", "support-bot", "--environment", "development")


def test_rollout_cli__start_status_advance_pause_resume_abort(agent: Agent) -> None:
    started = rollout(
        "start", *SCOPE, "--version", "2", "--reason", "friendlier prompt",
        "--stickiness", "userId", "--tenant-constraint", "acme, globex",
    )  # fmt: skip
    assert "v1 → v2: canary (step 1/3, 1% of sessions)" in started
    row = Rollout.objects.get()
    assert row.stickiness == "userId" and row.started_by_label == "cli:rollout"
    assert row.constraints == [
        {"contextName": "tenantId", "operator": "IN", "values": ["acme", "globex"]}
    ]
    assert "step 2/3, 10% of sessions" in rollout("advance", *SCOPE, "--reason", "fine")
    assert "paused from canary, 10%" in rollout("pause", *SCOPE, "--reason", "wait")
    assert "step 2/3" in rollout("resume", *SCOPE, "--reason", "go")
    status = rollout("status", *SCOPE)
    assert "stable v1" in status and "canary → paused (pause, 10%) by cli:rollout: wait" in status
    assert "aborted" in rollout("abort", *SCOPE, "--reason", "not today")
    events = [
        e.action for e in AuditEvent.objects.filter(action__startswith="rollout.").order_by("id")
    ]
    assert events == [
        "rollout.started", "rollout.advanced", "rollout.paused", "rollout.resumed",
        "rollout.aborted",
    ]  # fmt: skip


def test_rollout_cli__rollback__the_running_rollout_then_the_stable_version(
    agent: Agent, tenant: Tenant
) -> None:
    development = tenant.environments.get(slug="development")
    deployment_create(
        actor=ACTOR,
        agent=agent,
        environment=development,
        version=BundleVersion.objects.get(agent=agent, number=2),
        reason="v2",
    )
    deployment_create(
        actor=ACTOR,
        agent=agent,
        environment=development,
        version=BundleVersion.objects.get(agent=agent, number=1),
        reason="back to v1 by hand",
    )
    rollout("start", *SCOPE, "--version", "2", "--reason", "again")
    assert "rolled back: every runtime returns to v1" in rollout(
        "rollback", *SCOPE, "--reason", "bad"
    )
    assert Rollout.objects.get().state == "rolled_back"
    assert "Rolled back to v2" in rollout("rollback", *SCOPE, "--reason", "v1 is bad too")
    live = Deployment.objects.get(agent=agent, environment=development, state="live")
    assert live.version.number == 2 and live.kind == "rollback"


def test_rollout_cli__failing_gate__refused_then_overridden_with_reason(agent: Agent) -> None:
    production = ("--agent", "support-bot", "--environment", "staging")
    with pytest.raises(CommandError, match="roll it out there first"):
        rollout("start", *production, "--version", "2", "--reason", "r")
    assert not Rollout.objects.exists()
    rollout("start", *production, "--version", "2", "--reason", "r", "--override-gate", "hotfix")
    row = Rollout.objects.get()
    assert row.gate_override == "hotfix"
    audit = AuditEvent.objects.get(action="rollout.started")
    assert audit.after["gate_override"] == "hotfix"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("start", *SCOPE, "--version", "9", "--reason", "r"), "has no v9"),
        (("start", *SCOPE, "--version", "1", "--reason", "r"), "already stable"),
        (("start", *SCOPE, "--version", "2", "--reason", " "), "reason"),
        (("advance", *SCOPE, "--reason", "r"), "no rollout of support-bot is running"),
        (("status", "--agent", "nobody", "--environment", "development"), "not found"),
        (("status", "--agent", "support-bot", "--environment", "moon"), "not found"),
    ],
)
def test_rollout_cli__bad_input__clear_error_nothing_changes(
    agent: Agent, args: tuple[str, ...], message: str
) -> None:
    events = AuditEvent.objects.count()
    with pytest.raises(CommandError, match=message):
        rollout(*args)
    assert AuditEvent.objects.count() == events and not Rollout.objects.exists()


def test_rollout_cli__reason_is_required(agent: Agent) -> None:
    with pytest.raises(CommandError, match="--reason"):
        rollout("advance", *SCOPE)
