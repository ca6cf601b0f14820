"""Archiving an agent takes it out of every runtime's snapshot at once, and an archived agent
or environment can be restored, as a tenant can (service, API, pages), through the real
server: runtimes holding an environment-wide token lose the agent when it is archived and
get it back when it is restored; tokens of a restored scope work again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.models import AuditEvent
from apps.bundles.services import bundle_version_push
from apps.core import events
from apps.core.concurrency import StaleVersion
from apps.core.fastpath import state as fastpath_state
from apps.core.roles import Role
from apps.flags.models import KillSwitch
from apps.flags.services import kill_switch_engage
from apps.rollouts.services import deployment_create, rollout_start, rollout_transition
from apps.rollouts.services.rollouts import rollouts_pause_archived
from apps.tenancy import selectors
from apps.tenancy import services as tenancy
from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.services import (
    agent_archive,
    agent_restore,
    environment_archive,
    environment_create,
    environment_move,
    environment_restore,
    tenant_archive,
    tenant_restore,
)

from ..conftest import api_as
from ..factories import AgentFactory, make_user
from ..races import postgresql_only, race
from .test_archived_tenant import DEMO, SYSTEM, _push_v1_and_v2

CONFIG = "/api/runtime/v1/config"


def _deployed(tenant: Tenant, environment: Environment, *slugs: str) -> list[Agent]:
    agents = []
    for slug in slugs:
        agent = AgentFactory(tenant=tenant, slug=slug, name=slug.title())
        version = bundle_version_push(
            actor=SYSTEM,
            agent=agent,
            source=(DEMO / "support-bot-v1.yaml").read_text(),
            message="v1",
        ).version
        deployment_create(
            actor=SYSTEM, agent=agent, environment=environment, version=version, reason="go"
        )
        agents.append(agent)
    return agents


def _config(base: str, token: str, **headers: str) -> requests.Response:
    return requests.get(base + CONFIG, headers={"Authorization": token, **headers}, timeout=20)


def _agents(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.status_code
    return sorted(response.json()["snapshot"]["agents"])


@pytest.mark.parametrize("token_scope", ["environment", "other agent"])
def test_agent_archive__leaves_the_snapshot_at_once__restore_brings_it_back(
    asgi_server: str, tenant: Tenant, token_scope: str
) -> None:
    development = tenant.environments.get(slug="development")
    bot, other = _deployed(tenant, development, "support-bot", "billing-bot")
    scoped = None if token_scope == "environment" else other
    _, token = runtime_token_create(
        actor=SYSTEM, tenant=tenant, environment=development, agent=scoped, name="fleet"
    )
    first = _config(asgi_server, token)
    seen = ["billing-bot", "support-bot"] if scoped is None else ["billing-bot"]
    assert _agents(first) == seen

    agent_archive(actor=SYSTEM, agent=bot, reason="retired")
    after = _config(asgi_server, token, **{"If-None-Match": first.headers["ETag"]})
    assert _agents(after) == ["billing-bot"]  # a new revision, without the archived agent
    assert after.json()["snapshot"]["revision"] > first.json()["snapshot"]["revision"]

    agent_restore(actor=SYSTEM, agent=bot, reason="back in service")
    assert _agents(_config(asgi_server, token)) == seen
    actions = AuditEvent.objects.filter(target_id=str(bot.pk), action__startswith="agent.")
    assert list(actions.order_by("id").values_list("action", flat=True)) == [
        "agent.archived",
        "agent.restored",
    ]


def test_agent_restore__its_own_token_and_pushes_work_again(
    asgi_server: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the refusal cached for a minute: only the restore's event can lift it in time
    monkeypatch.setattr(fastpath_state, "NEGATIVE_TOKEN_TTL_S", 60.0)
    development = tenant.environments.get(slug="development")
    (bot,) = _deployed(tenant, development, "support-bot")
    _, token = runtime_token_create(
        actor=SYSTEM, tenant=tenant, environment=development, agent=bot, name="bot"
    )
    assert _config(asgi_server, token).status_code == 200
    agent_archive(actor=SYSTEM, agent=bot, reason="retired")
    assert _config(asgi_server, token).status_code == 401
    with pytest.raises(ValidationError, match="restore it before pushing"):
        bundle_version_push(
            actor=SYSTEM,
            agent=bot,
            source=(DEMO / "support-bot-v2.yaml").read_text(),
            message="refused",
        )

    agent_restore(actor=SYSTEM, agent=bot, reason="back")
    assert _agents(_config(asgi_server, token)) == ["support-bot"]
    pushed = bundle_version_push(
        actor=SYSTEM,
        agent=bot,
        source=(DEMO / "support-bot-v2.yaml").read_text(),
        message="v2",
    )
    assert pushed.version.number == 2


@pytest.mark.django_db
def test_restore__not_archived_stale_or_archived_tenant__refused_and_nothing_changes(
    tenant: Tenant,
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    staging = tenant.environments.get(slug="staging")
    with pytest.raises(ValidationError, match="not archived"):
        agent_restore(actor=SYSTEM, agent=agent, reason="r")
    with pytest.raises(ValidationError, match="not archived"):
        environment_restore(actor=SYSTEM, environment=staging, reason="r")
    archived = agent_archive(actor=SYSTEM, agent=agent, reason="r")
    with pytest.raises(StaleVersion):
        agent_restore(actor=SYSTEM, agent=agent, reason="r", expected_version=archived.version - 1)
    with pytest.raises(ValidationError):
        agent_restore(actor=SYSTEM, agent=agent, reason="  ")
    environment_archive(actor=SYSTEM, environment=staging, reason="r")
    revisions = dict(tenant.environments.values_list("pk", "revision"))
    tenant_archive(actor=SYSTEM, tenant=tenant, reason="offboarded")
    with pytest.raises(ValidationError, match="archived"):
        agent_restore(actor=SYSTEM, agent=agent, reason="r")
    with pytest.raises(ValidationError, match="archived"):
        environment_restore(actor=SYSTEM, environment=staging, reason="r")
    assert Agent.objects.get(pk=agent.pk).is_archived
    assert Environment.objects.get(pk=staging.pk).is_archived
    assert dict(tenant.environments.values_list("pk", "revision")) == revisions
    assert not AuditEvent.objects.filter(action__endswith=".restored").exists()


@pytest.mark.django_db
def test_environment_restore__its_place_or_last_when_taken__revision_grows(
    tenant: Tenant,
) -> None:
    def order() -> list[str]:
        return list(
            tenant.environments.filter(archived_at__isnull=True)
            .order_by("position")
            .values_list("slug", flat=True)
        )

    staging = tenant.environments.get(slug="staging")
    before = staging.revision
    environment_archive(actor=SYSTEM, environment=staging, reason="r")
    restored = environment_restore(actor=SYSTEM, environment=staging, reason="back")
    assert order() == ["development", "staging", "production"]
    assert restored.revision == before + 1

    environment_archive(actor=SYSTEM, environment=staging, reason="r")
    assert not selectors.environment_place_taken(environment=Environment.objects.get(pk=staging.pk))
    qa = environment_create(
        actor=SYSTEM, tenant=tenant, slug="qa", name="QA", position=staging.position
    )
    assert selectors.environment_place_taken(environment=Environment.objects.get(pk=staging.pk))
    environment_restore(actor=SYSTEM, environment=staging, reason="back")
    assert order() == ["development", "qa", "production", "staging"]
    assert qa.position < Environment.objects.get(pk=staging.pk).position
    event = AuditEvent.objects.filter(action="environment.restored").last()
    assert event is not None and event.reason == "back"


def test_environment_restore__tokens_work_again__snapshot_built_now(
    asgi_server: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the refusal cached for a minute: only the restore's event can lift it in time
    monkeypatch.setattr(fastpath_state, "NEGATIVE_TOKEN_TTL_S", 60.0)
    development = tenant.environments.get(slug="development")
    bot, _ = _deployed(tenant, development, "support-bot", "billing-bot")
    _, token = runtime_token_create(
        actor=SYSTEM, tenant=tenant, environment=development, name="fleet"
    )
    assert _agents(_config(asgi_server, token)) == ["billing-bot", "support-bot"]
    environment_archive(actor=SYSTEM, environment=development, reason="paused")
    assert _config(asgi_server, token).status_code == 401
    # archived meanwhile: the restored environment's snapshot must not list it
    agent_archive(actor=SYSTEM, agent=bot, reason="retired")

    environment_restore(actor=SYSTEM, environment=development, reason="back")
    assert _agents(_config(asgi_server, token)) == ["billing-bot"]


@pytest.mark.django_db
def test_api_restore__agent_and_environment__200_with_version__400_when_not_archived(
    tenant: Tenant, admin: Any
) -> None:
    client = api_as(admin)
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    staging = tenant.environments.get(slug="staging")
    for kind, obj in (("agents", agent), ("environments", staging)):
        url = f"/api/v1/{kind}/{obj.pk}/"
        refused = client.post(url + "restore/", {"reason": "r"}, format="json")
        assert refused.status_code == 400, refused.content
        assert client.post(url + "archive/", {"reason": "r"}, format="json").status_code == 200
        missing = client.post(url + "restore/", {}, format="json")
        assert missing.status_code == 400 and "reason" in missing.json()["errors"]
        stale = client.post(url + "restore/", {"reason": "r", "expected_version": 1}, format="json")
        assert stale.status_code == 409
        done = client.post(url + "restore/", {"reason": "back"}, format="json")
        assert done.status_code == 200, done.content
        assert done.json()["archived_at"] is None
        assert done.headers["ETag"] == f'"{done.json()["version"]}"'


@pytest.mark.django_db
def test_pages__archived_agent_and_environment__restore_from_their_pages(
    tenant: Tenant, operator: Any
) -> None:
    client = Client()
    client.force_login(operator)
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    staging = tenant.environments.get(slug="staging")
    agent_archive(actor=SYSTEM, agent=agent, reason="r")
    environment_archive(actor=SYSTEM, environment=staging, reason="r")

    page = client.get(f"/agents/{agent.pk}/").content.decode()
    assert f"/agents/{agent.pk}/restore/" in page and f"/agents/{agent.pk}/archive/" not in page
    confirm = client.get(f"/agents/{agent.pk}/restore/").content.decode()
    assert "Restore Support bot?" in confirm and 'name="reason"' in confirm
    version = Agent.objects.get(pk=agent.pk).version
    done = client.post(
        f"/agents/{agent.pk}/restore/", {"reason": "needed", "expected_version": version}
    )
    assert done.status_code == 302 and done["Location"] == f"/agents/{agent.pk}/"
    assert not Agent.objects.get(pk=agent.pk).is_archived

    confirm = client.get(f"/environments/{staging.pk}/restore/").content.decode()
    assert "comes back to its place in the promotion order" in confirm
    tenant_page = client.get(f"/tenants/{tenant.slug}/").content.decode()
    assert "Archived environments" in tenant_page
    assert f"/environments/{staging.pk}/restore/" in tenant_page
    staging.refresh_from_db()
    done = client.post(
        f"/environments/{staging.pk}/restore/",
        {"reason": "needed", "expected_version": staging.version},
    )
    assert done.status_code == 302
    assert not Environment.objects.get(pk=staging.pk).is_archived
    assert "Archived environments" not in client.get(f"/tenants/{tenant.slug}/").content.decode()


@pytest.mark.django_db
def test_pages__viewer__sees_no_restore_button(tenant: Tenant) -> None:
    viewer = make_user(Role.VIEWER, tenant)
    client = Client()
    client.force_login(viewer)
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    agent_archive(actor=SYSTEM, agent=agent, reason="r")
    environment_archive(
        actor=SYSTEM, environment=tenant.environments.get(slug="staging"), reason="r"
    )
    assert "/restore/" not in client.get(f"/agents/{agent.pk}/").content.decode()
    page = client.get(f"/tenants/{tenant.slug}/").content.decode()
    assert "Archived environments" in page and "/restore/" not in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_agent_archive_racing_a_deploy__postgresql__no_deadlock_one_order_wins(
    tenant: Tenant, attempt: int
) -> None:
    """Archive locks the tenant's environments, then the agent; a deploy locks its
    environment, then the agent: the same order, so they queue instead of deadlocking. Either
    the deploy lands first (and the snapshot built after the archive drops it), or the archive
    does and the deploy is refused."""
    postgresql_only()
    development = tenant.environments.get(slug="development")
    (bot,) = _deployed(tenant, development, "support-bot")
    v2 = bundle_version_push(
        actor=SYSTEM,
        agent=bot,
        source=(DEMO / "support-bot-v2.yaml").read_text(),
        message="v2",
    ).version
    results, errors = race(
        lambda: agent_archive(actor=SYSTEM, agent=bot, reason="retired"),
        lambda: deployment_create(
            actor=SYSTEM, agent=bot, environment=development, version=v2, reason="v2"
        ),
    )
    assert len(results) + len(errors) == 2, "a call failed with something else (a deadlock?)"
    assert Agent.objects.get(pk=bot.pk).is_archived
    if errors:
        assert "archived" in str(errors[0])


@pytest.mark.django_db(transaction=True)
def test_two_restores_at_once__postgresql__one_restores_the_other_is_refused(
    tenant: Tenant,
) -> None:
    postgresql_only()
    bot = AgentFactory(tenant=tenant, slug="support-bot")
    agent_archive(actor=SYSTEM, agent=bot, reason="r")
    results, errors = race(
        lambda: agent_restore(actor=SYSTEM, agent=bot, reason="one"),
        lambda: agent_restore(actor=SYSTEM, agent=bot, reason="two"),
    )
    assert len(results) == 1 and len(errors) == 1
    assert "not archived" in str(errors[0])
    assert AuditEvent.objects.filter(action="agent.restored").count() == 1


@pytest.mark.django_db(transaction=True)
def test_agent_archive_racing_a_global_kill_switch__postgresql__same_lock_order_no_deadlock(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production moved first: the promotion order is no longer the id order. The archive
    locks the tenant's environments (ascending ids) and pauses after the first; the engage,
    which takes no tenant lock, bumps every environment. Bumping in promotion order, it took
    production and then waited for the archive's environment while the archive waited for
    production: a deadlock, and the engage a 500. Both now bump in ascending id order."""
    postgresql_only()
    production = tenant.environments.get(slug="production")
    for _ in range(2):
        production.refresh_from_db()
        environment_move(actor=SYSTEM, environment=production, direction="up", reason="first")
    bot = AgentFactory(tenant=tenant, slug="support-bot")
    archive_locked, engage_bumped = threading.Event(), threading.Event()
    archiving: dict[str, int] = {}
    real_lock, real_bump = tenancy.environment_lock, tenancy.environment_revision_bump

    def lock_then_pause(*, environment_id: int) -> Environment:
        row = real_lock(environment_id=environment_id)
        if threading.get_ident() == archiving.get("thread") and not archive_locked.is_set():
            archive_locked.set()
            engage_bumped.wait(2)  # the engage bumps meanwhile (or waits for this lock)
        return row

    def bump_and_tell(*, environment_id: int) -> int:
        revision = real_bump(environment_id=environment_id)
        if threading.get_ident() != archiving.get("thread"):
            engage_bumped.set()
        return revision

    monkeypatch.setattr(tenancy, "environment_lock", lock_then_pause)
    monkeypatch.setattr(tenancy, "environment_revision_bump", bump_and_tell)

    def archive() -> Agent:
        archiving["thread"] = threading.get_ident()
        return agent_archive(actor=SYSTEM, agent=bot, reason="retired")

    def engage() -> Any:
        archive_locked.wait(5)
        return kill_switch_engage(
            actor=SYSTEM, kind="tool_disabled", scope="global", tool_pattern="shell", reason="cve"
        )

    failed: list[BaseException] = []
    threads = [threading.Thread(target=_recording(call, failed)) for call in (archive, engage)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failed == []
    assert Agent.objects.get(pk=bot.pk).is_archived
    assert KillSwitch.objects.filter(tool_pattern="shell", released_at__isnull=True).count() == 1


def _recording(call: Callable[[], Any], failed: list[BaseException]) -> Callable[[], None]:
    def run() -> None:
        try:
            call()
        except BaseException as exc:  # a deadlock is an OperationalError, not a refusal
            failed.append(exc)
        finally:
            connection.close()

    return run


ARCHIVE_SCOPE: dict[str, Callable[[Tenant, Agent, Environment], Any]] = {
    "tenant": lambda t, a, e: tenant_archive(actor=SYSTEM, tenant=t, reason="offboarded"),
    "agent": lambda t, a, e: agent_archive(actor=SYSTEM, agent=a, reason="retired"),
    "environment": lambda t, a, e: environment_archive(actor=SYSTEM, environment=e, reason="gone"),
}
RESTORE_SCOPE: dict[str, Callable[[Tenant, Agent, Environment], Any]] = {
    "tenant": lambda t, a, e: tenant_restore(actor=SYSTEM, tenant=t, reason="back"),
    "agent": lambda t, a, e: agent_restore(actor=SYSTEM, agent=a, reason="back"),
    "environment": lambda t, a, e: environment_restore(actor=SYSTEM, environment=e, reason="back"),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", sorted(ARCHIVE_SCOPE))
def test_archive__pauses_its_running_rollout__restore_leaves_it_paused_for_an_operator(
    tenant: Tenant, kind: str
) -> None:
    """Restored with its rollout still in canary, the analysis would judge it at once on
    evidence from before the archive, its dwell long met. Paused at the archive, it waits for
    an operator's resume, which restarts the evidence."""
    development = tenant.environments.get(slug="development")
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    v1, v2 = _push_v1_and_v2(agent)
    deployment_create(actor=SYSTEM, agent=agent, environment=development, version=v1, reason="v1")
    rollout = rollout_start(
        actor=SYSTEM, agent=agent, environment=development, candidate=v2, reason="v2"
    )
    # another agent's rollout: paused with its tenant or environment, not with the agent
    other = AgentFactory(tenant=tenant, slug="other-bot")
    other_v1, other_v2 = _push_v1_and_v2(other)
    deployment_create(
        actor=SYSTEM, agent=other, environment=development, version=other_v1, reason="v1"
    )
    other_rollout = rollout_start(
        actor=SYSTEM, agent=other, environment=development, candidate=other_v2, reason="v2"
    )

    ARCHIVE_SCOPE[kind](tenant, agent, development)
    rollout.refresh_from_db()
    assert rollout.state == "paused"
    pause = rollout.transitions.order_by("id").last()
    assert pause is not None and not pause.automatic  # not the analysis's decision
    assert pause.actor_label == "archive by test" and "archived" in pause.reason

    RESTORE_SCOPE[kind](tenant, agent, development)
    rollout.refresh_from_db()
    assert rollout.state == "paused"
    resumed = rollout_transition(actor=SYSTEM, rollout_id=rollout.pk, event="resume", reason="ok")
    assert resumed.rollout.state == "canary"
    other_rollout.refresh_from_db()
    assert other_rollout.state == ("canary" if kind == "agent" else "paused")


@pytest.mark.django_db(transaction=True)
def test_restore__a_rollout_whose_archive_pause_was_lost__paused_by_the_restore(
    tenant: Tenant,
) -> None:
    """A crash between the archive's commit and its pause leaves the rollout in canary; no
    rollout of an archived scope can move forward, so the restore pauses it."""
    development = tenant.environments.get(slug="development")
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    v1, v2 = _push_v1_and_v2(agent)
    deployment_create(actor=SYSTEM, agent=agent, environment=development, version=v1, reason="v1")
    rollout = rollout_start(
        actor=SYSTEM, agent=agent, environment=development, candidate=v2, reason="v2"
    )
    events.unsubscribe(events.SCOPE_ARCHIVED, rollouts_pause_archived)
    try:
        agent_archive(actor=SYSTEM, agent=agent, reason="retired")
    finally:
        events.subscribe(events.SCOPE_ARCHIVED, rollouts_pause_archived)
    rollout.refresh_from_db()
    assert rollout.state == "canary"

    agent_restore(actor=SYSTEM, agent=agent, reason="back")
    rollout.refresh_from_db()
    assert rollout.state == "paused"
    pause = rollout.transitions.order_by("id").last()
    assert pause is not None and pause.actor_label == "restore by test"
    assert "restored" in pause.reason


@pytest.mark.django_db
def test_confirmation_pages__moot_action__say_so_up_front(tenant: Tenant, admin: Any) -> None:
    """Restoring what is not archived, or archiving what already is: the service refuses it,
    and the confirmation page says so before anyone types a reason."""
    client = Client()
    client.force_login(admin)
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    staging = tenant.environments.get(slug="staging")
    active = {
        f"/tenants/{tenant.slug}/restore/": f"{tenant.name} is not archived",
        f"/agents/{agent.pk}/restore/": "Support bot is not archived",
        f"/environments/{staging.pk}/restore/": "Staging is not archived",
    }
    for url, said in active.items():
        assert said in client.get(url).content.decode(), url
    agent_archive(actor=SYSTEM, agent=agent, reason="r")
    environment_archive(actor=SYSTEM, environment=staging, reason="r")
    assert (
        "Support bot is already archived"
        in client.get(f"/agents/{agent.pk}/archive/").content.decode()
    )
    page = client.get(f"/environments/{staging.pk}/archive/").content.decode()
    assert "Staging is already archived" in page
    assert (
        "Support bot comes back into lists"
        in client.get(f"/agents/{agent.pk}/restore/").content.decode()
    )
