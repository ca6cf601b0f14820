"""Each audit event links to its target's page: one case per target type the services record
(built through the services themselves, so the events are the ones operators see), a target
with no page and a deleted target as plain text, and every recorded type in the table."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.runtime_tokens import runtime_token_create
from apps.accounts.services import user_create
from apps.alerts.services import alert_channel_create, alert_raise
from apps.approvals.services.queues import queue_create
from apps.approvals.services.requests import approval_open
from apps.audit.links import TARGET_PAGES, target_link
from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_event_list
from apps.budgets.services.definitions import budget_create
from apps.bundles.services import bundle_version_push, evaluation_record, promotion_gate_set
from apps.core.roles import Role
from apps.flags.services.flags import flag_create, flag_delete, segment_create
from apps.flags.services.kill_switches import kill_switch_engage
from apps.reviews.services import review_grade
from apps.rollouts.selectors import rollout_plan_document
from apps.rollouts.services import deployment_create, rollout_plan_set, rollout_start
from apps.tenancy.models import Tenant
from apps.tenancy.services import agent_create, environment_create, tenant_create

from ..approvals.conftest import CONTRACT, body
from ..factories import make_user

pytestmark = pytest.mark.django_db
DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"


@pytest.fixture
def world(tenant: Tenant, admin: User, settings: Any) -> dict[str, Any]:
    """One of everything the audit log records, made by the services (each writes its event)."""
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.0/8"]  # the alert channel's loopback URL
    production = tenant.environments.get(slug="production")
    development = tenant.environments.get(slug="development")
    w: dict[str, Any] = {"tenant": tenant_create(actor=admin, slug="initech", name="Initech")}
    w["user"] = user_create(actor=admin, username="uma", role=Role.VIEWER)[0]
    w["token"] = runtime_token_create(
        actor=admin, tenant=tenant, environment=production, name="fleet"
    )[0]
    w["environment"] = environment_create(actor=admin, tenant=tenant, slug="qa", name="QA")
    agent = w["agent"] = agent_create(
        actor=admin, tenant=tenant, slug="support-bot", name="Support bot"
    )
    v1, v2 = (
        bundle_version_push(
            actor=admin,
            agent=agent,
            message=name,
            source=(DEMO / f"support-bot-{name}.yaml").read_text(),
        ).version
        for name in ("v1", "v2")
    )
    w["version"] = v1
    w["evaluation"] = evaluation_record(
        actor=admin, version=v1, suite="smoke", passed=10, failed=0
    )[0]
    w["gate"] = promotion_gate_set(
        actor=admin,
        environment=w["environment"],
        requirements=[{"suite": "smoke", "min_pass_rate": 0.9}],
        reason="smoke first",
    )
    w["flag"] = flag_create(
        actor=admin, environment=production, name="new-checkout", reason="checkout test"
    )
    w["segment"] = segment_create(
        actor=admin,
        environment=production,
        name="beta",
        constraints=[{"contextName": "userId", "operator": "IN", "values": ["u1"]}],
        reason="beta users",
    )
    w["kill_switch"] = kill_switch_engage(
        actor=admin,
        kind="agent_stopped",
        scope="agent",
        reason="answers in Klingon",
        tenant=tenant,
        agent=agent,
    )
    w["deployment"] = deployment_create(
        actor=admin, agent=agent, environment=development, version=v1, reason="launch"
    )
    w["plan"] = rollout_plan_set(
        actor=admin,
        environment=development,
        document=rollout_plan_document(environment=development),
        reason="the defaults, written down",
    )
    w["rollout"] = rollout_start(
        actor=admin, agent=agent, environment=development, candidate=v2, reason="friendlier"
    )
    w["budget"] = budget_create(
        actor=admin,
        tenant=tenant,
        data={
            "name": "daily",
            "scope": "tenant",
            "window": "day",
            "limits": {"cost_usd": "5"},
            "action": "alert",
        },
    )
    approver = make_user(Role.APPROVER, tenant, username="alice-approver")
    w["queue"] = queue_create(
        actor=admin,
        tenant=tenant,
        data={
            "name": "Refunds",
            "match_tools": ["issue_refund"],
            "timeout_s": 3600,
            "sla_s": 600,
            "approvers": [approver],
        },
    )
    refund = agent_create(actor=admin, tenant=tenant, slug="refund-agent", name="Refund agent")
    contract = bundle_version_push(
        actor=admin, agent=refund, content=CONTRACT, message="first"
    ).version
    deployment_create(
        actor=admin, agent=refund, environment=production, version=contract, reason="first"
    )
    token, raw = runtime_token_create(
        actor=admin, tenant=tenant, environment=production, name="refunds"
    )
    w["approval"] = approval_open(
        tenant_id=tenant.pk,
        environment_id=production.pk,
        token_id=token.pk,
        token_agent_id=None,
        token_label=token.name,
        body=body(),
    ).request
    w["alert"] = alert_raise(
        tenant=tenant, kind="rollout.paused", severity="warning", title="paused", detail=""
    )
    w["channel"] = alert_channel_create(
        actor=admin, tenant=tenant, name="ops", url="http://127.0.0.1:9/alerts"
    )[0]
    w["grade"] = review_grade(
        actor=admin, agent=agent, environment=production, session_id="sess-1", grade="good"
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=raw)
    client.post("/api/runtime/v1/heartbeat", {"instance_id": "pod-1"}, format="json")
    return w


def _event(obj: Any) -> AuditEvent:
    return AuditEvent.objects.filter(
        target_type=obj._meta.label_lower, target_id=str(obj.pk)
    ).latest("id")


CASES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "auth.user": ("user", lambda w: f"/users/{w['user'].pk}/"),
    "accounts.runtimetoken": ("token", lambda w: f"/runtimes/#runtime-token-{w['token'].pk}"),
    "tenancy.tenant": ("tenant", lambda w: "/tenants/initech/"),
    "tenancy.agent": ("agent", lambda w: f"/agents/{w['agent'].pk}/"),
    "tenancy.environment": ("environment", lambda w: f"/tenants/{w['environment'].tenant.slug}/"),
    "bundles.bundleversion": (
        "version",
        lambda w: f"/bundles/agents/{w['agent'].pk}/v1/",
    ),
    "bundles.evaluation": ("evaluation", lambda w: f"/bundles/agents/{w['agent'].pk}/v1/"),
    "bundles.promotiongate": ("gate", lambda w: "/bundles/gates/"),
    "flags.flag": ("flag", lambda w: f"/flags/{w['flag'].pk}/"),
    "flags.segment": (
        "segment",
        lambda w: f"/flags/?environment={w['segment'].environment_id}",
    ),
    "flags.killswitch": (
        "kill_switch",
        lambda w: f"/flags/kill-switches/#kill-switch-{w['kill_switch'].pk}",
    ),
    "rollouts.deployment": ("deployment", lambda w: f"/agents/{w['agent'].pk}/"),
    "rollouts.rolloutplan": (
        "plan",
        lambda w: f"/environments/{w['plan'].environment_id}/rollout-plan/",
    ),
    "rollouts.rollout": ("rollout", lambda w: f"/rollouts/{w['rollout'].pk}/"),
    "budgets.budget": ("budget", lambda w: f"/budgets/{w['budget'].pk}/"),
    "approvals.approvalqueue": ("queue", lambda w: "/approvals/queues/"),
    "approvals.approvalrequest": ("approval", lambda w: f"/approvals/?request={w['approval'].pk}"),
    "alerts.alert": ("alert", lambda w: "/alerts/"),
    "alerts.alertchannel": ("channel", lambda w: "/alerts/"),
    "reviews.reviewgrade": ("grade", lambda w: f"/agents/{w['agent'].pk}/reviews/"),
}


@pytest.mark.parametrize("target_type", sorted(CASES))
def test_target_link__each_target_type__links_its_page_which_opens(
    world: dict[str, Any], admin: User, target_type: str
) -> None:
    key, expected = CASES[target_type]
    event = _event(world[key])
    client = Client()
    client.force_login(admin)

    link = target_link(event)

    assert event.target_type == target_type
    assert link == expected(world)
    assert client.get(link.split("#")[0]).status_code == 200
    detail = client.get(f"/audit/{event.pk}/").content.decode()
    assert f'href="{link}" data-testid="audit-target"' in detail


@pytest.mark.parametrize("role", [Role.VIEWER, Role.APPROVER, Role.OPERATOR])
@pytest.mark.parametrize("target_type", sorted(CASES))
def test_target_link__for_each_role__only_a_page_it_opens(
    world: dict[str, Any], tenant: Tenant, role: Role, target_type: str
) -> None:
    # A link an audit reader follows opens (200), whatever their role: an Admin-only page
    # (a user's) is plain text for the others, never a 403 behind a link.
    reader = make_user(role, tenant, username=f"reader-{role.value.lower()}")
    client = Client()
    client.force_login(reader)
    key, _ = CASES[target_type]
    event = _event(world[key])
    if not audit_event_list(user=reader).filter(pk=event.pk).exists():
        return  # another tenant's event: this reader's audit log never shows it

    link = target_link(event, user=reader)

    if link is not None:  # None: plain text (a page or a row this reader may not open)
        assert client.get(link.split("#")[0]).status_code == 200


def test_target_pages__every_type_in_the_log__is_in_the_table(world: dict[str, Any]) -> None:
    recorded = set(AuditEvent.objects.values_list("target_type", flat=True).distinct())

    assert recorded - set(TARGET_PAGES) == set()
    assert set(CASES) | {"bundles.signingkey", "runtimes.runtimeinstance"} >= recorded


def test_target_link__signing_key_has_no_page__plain_text(
    world: dict[str, Any], admin: User
) -> None:
    event = AuditEvent.objects.filter(target_type="bundles.signingkey").latest("id")
    client = Client()
    client.force_login(admin)

    detail = client.get(f"/audit/{event.pk}/").content.decode()

    assert target_link(event) is None
    assert f'<span data-testid="audit-target">{event.target_label}</span>' in detail


def test_target_link__deleted_flag__plain_text_label_kept(
    world: dict[str, Any], admin: User
) -> None:
    flag = world["flag"]
    created = _event(flag)
    with transaction.atomic():
        flag_delete(actor=admin, flag=flag, reason="done")
    client = Client()
    client.force_login(admin)

    listing = client.get("/audit/?action=flag.").content.decode()
    detail = client.get(f"/audit/{created.pk}/").content.decode()

    assert target_link(created) is None
    assert f"/flags/{created.target_id}/" not in listing
    assert f'<span data-testid="audit-target">{created.target_label}</span>' in detail
    assert "or it no longer exists" in detail


def test_audit_list__links_each_target__queries_bounded(
    world: dict[str, Any], admin: User, django_assert_max_num_queries: Any
) -> None:
    client = Client()
    client.force_login(admin)

    with django_assert_max_num_queries(40):
        page = client.get("/audit/").content.decode()

    assert f'href="/rollouts/{world["rollout"].pk}/" data-testid="audit-target"' in page
    assert f'href="/budgets/{world["budget"].pk}/" data-testid="audit-target"' in page


def test_audit_api__target_url_and_changes(world: dict[str, Any], admin: User) -> None:
    client = APIClient()
    client.force_authenticate(admin)
    event = _event(world["budget"])

    one = client.get(f"/api/v1/audit-events/{event.pk}/").json()
    listing = client.get("/api/v1/audit-events/", {"limit": 200}).json()

    assert one["target_url"] == f"/budgets/{world['budget'].pk}/"
    assert {"path": "name", "kind": "added", "after": "daily"} in one["changes"]
    rows = listing["results"] if isinstance(listing, dict) else listing
    assert any(r["target_url"] == f"/rollouts/{world['rollout'].pk}/" for r in rows)


def test_overview__recent_changes__link_their_audit_events(
    world: dict[str, Any], admin: User
) -> None:
    # the overview's ten recent changes link to their audit events, whose pages link the
    # targets (the per-target-type checks cost a fifth of the overview: decision 0033)
    client = Client()
    client.force_login(admin)

    page = client.get("/").content.decode()

    recent = page.split("Recent changes", 1)[1]
    assert 'data-testid="audit-target"' in recent
    assert '<a class="mono" href="/audit/' in recent


@pytest.mark.parametrize("role", [Role.VIEWER, Role.APPROVER, Role.OPERATOR])
def test_target_link__page_the_role_may_not_open__plain_text(
    world: dict[str, Any], tenant: Tenant, role: Role
) -> None:
    """A link is only to a page the reader may open: a Viewer is never sent to a segment's
    or a queue's edit page (a 403), on the audit list, an event's page, the overview or the
    API; no link it does get is refused."""
    reader = make_user(role, tenant, username=f"reader-{role.value.lower()}")
    client = Client()
    client.force_login(reader)
    api = APIClient()
    api.force_authenticate(reader)

    for target_type, (key, _) in CASES.items():
        event = _event(world[key])
        link = target_link(event, user=reader)
        detail = client.get(f"/audit/{event.pk}/")
        if detail.status_code == 404:
            continue  # an event outside the reader's tenants
        api_link = api.get(f"/api/v1/audit-events/{event.pk}/").json()["target_url"]
        assert api_link == link, target_type
        if link is None:
            assert 'data-testid="audit-target">' in detail.content.decode(), target_type
            continue
        # never a page the role is refused (an approval request outside the Approver's
        # queues is another matter: the inbox does not show it, 404)
        assert client.get(link.split("#")[0]).status_code != 403, (target_type, link)
    listed = client.get("/audit/").content.decode() + client.get("/").content.decode()
    for href in re.findall(r'href="([^"]+)" data-testid="audit-target"', listed):
        assert client.get(href.split("#")[0]).status_code != 403, href
