"""The authorisation matrix, generated from the URL configuration (issue 9, the nets).

Every route Django serves (UI pages, operator API, runtime and Unleash client API) is listed
in ``ROUTES`` with the permission each method needs. The test walks the URL resolver, so a
new route without an entry fails ``test_every_route_has_a_matrix_entry``; each route is then
called as anonymous, Viewer, Approver, Operator, Admin, another tenant's Operator, a runtime
token and a revoked runtime token. The expected outcome of a cell follows from the role
definitions (``apps.core.roles.ROLE_PERMISSIONS``):

* allowed: anything but a refusal (a 400 for the empty body we send is allowed: it passed the
  gate);
* refused: anonymous and runtime tokens on the UI are sent to the login page (302), on the
  operator API answered 401; a role without the permission gets 403; another tenant's user
  gets 404 for this tenant's objects; a user or a revoked token on the runtime API gets 401.

A refused write changes nothing: row counts of every model and the audit count stay equal.

This is the net (docs/decisions/0018): one row per route, UI and runtime API included, so a
new URL cannot ship without saying who may call it. What each operator API endpoint does with
a permission and a scope (403 without the role, 404 outside the tenant, 2xx inside, refused
writes change nothing) is tested in depth by the shared suite, ``tests/api_permissions.py``,
which replaced the per-app role matrices of tests/{tenancy,flags,bundles}/test_api.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from apps.accounts.runtime_tokens import runtime_token_create, runtime_token_revoke
from apps.alerts.models import AlertChannel
from apps.alerts.services import alert_raise
from apps.approvals.services import approval_open, queue_create
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.budgets.services import budget_create
from apps.bundles.services import bundle_version_push
from apps.core.canonical import canonical_json
from apps.core.roles import ROLE_PERMISSIONS, Role
from apps.rollouts.models import Deployment
from apps.rollouts.services import deployment_create, rollout_start
from apps.telemetry.models import RequestRecord
from apps.telemetry.services import records_ingest
from apps.tenancy.models import Tenant
from tests.bundles.conftest import demo_text
from tests.factories import AgentFactory, make_user
from tests.tables import row_counts

pytestmark = pytest.mark.django_db
ACTOR = SystemActor("matrix")

PUBLIC = "public"  # anyone, signed in or not
LOGGED_IN = "logged-in"  # any signed-in user, whatever the role
RUNTIME = "runtime"  # a valid runtime token only

PRINCIPALS = [
    "anonymous",
    "runtime-token",
    "revoked-token",
    "other-tenant",
    "viewer",
    "approver",
    "operator",
    "admin",
]
ROLE_OF = {
    "viewer": Role.VIEWER,
    "approver": Role.APPROVER,
    "operator": Role.OPERATOR,
    "admin": Role.ADMIN,
    "other-tenant": Role.OPERATOR,
}


@dataclass(frozen=True)
class Route:
    """One URL: how to fill its arguments from the world, and what each method needs.
    ``scoped``: the arguments name an object of the tenant, so another tenant's user gets 404.
    """

    args: str | None
    methods: dict[str, str]
    scoped: bool = False


def _r(args: str | None, scoped: bool = False, **methods: str) -> Route:
    return Route(args, {m.upper(): p for m, p in methods.items()}, scoped)


ROUTES: dict[str, Route] = {
    # ---------------------------------------------------------------- project
    "login": _r(None, get=PUBLIC),
    "logout": _r(None, post=PUBLIC),
    "healthz": _r(None, get=PUBLIC),
    # The API description is public: it documents an open-source product, no data.
    "api-schema": _r(None, get=PUBLIC),
    "api-docs": _r(None, get=PUBLIC),
    "api-redoc": _r(None, get=PUBLIC),
    # ---------------------------------------------------------------- operator API: tenancy
    "tenant-list": _r(None, get="tenancy.view_tenant", post="tenancy.add_tenant"),
    "tenant-detail": _r("tenant", True, get="tenancy.view_tenant", patch="tenancy.change_tenant"),
    "tenant-archive": _r("tenant", True, post="tenancy.change_tenant"),
    "tenant-restore": _r("tenant", True, post="tenancy.change_tenant"),
    "agent-list": _r(None, get="tenancy.view_agent", post="tenancy.add_agent"),
    "agent-detail": _r("agent", True, get="tenancy.view_agent", patch="tenancy.change_agent"),
    "agent-archive": _r("agent", True, post="tenancy.change_agent"),
    "agent-restore": _r("agent", True, post="tenancy.change_agent"),
    "environment-list": _r(None, get="tenancy.view_environment", post="tenancy.add_environment"),
    "environment-detail": _r(
        "environment", True, get="tenancy.view_environment", patch="tenancy.change_environment"
    ),
    "environment-archive": _r("environment", True, post="tenancy.change_environment"),
    "environment-restore": _r("environment", True, post="tenancy.change_environment"),
    "environment-move": _r("environment", True, post="tenancy.change_environment"),
    # ---------------------------------------------------------------- operator API: accounts
    "api-token": _r(None, post=PUBLIC),
    "api-me": _r(None, get=LOGGED_IN),
    "user-list": _r(None, get="auth.view_user", post="auth.add_user"),
    "user-detail": _r("user", get="auth.view_user", patch="auth.change_user"),
    "user-grant-tenant": _r("user", post="auth.change_user"),
    "user-revoke-tenant": _r("user", post="auth.change_user"),
    "user-reset-password": _r("user", post="auth.change_user"),
    "runtime-token-list": _r(
        None, get="accounts.view_runtimetoken", post="accounts.add_runtimetoken"
    ),
    "runtime-token-detail": _r("runtime_token", True, get="accounts.view_runtimetoken"),
    "runtime-token-revoke": _r("runtime_token", True, post="accounts.change_runtimetoken"),
    # ---------------------------------------------------------------- operator API: runtimes
    "runtime-list": _r(None, get="runtimes.view_runtimeinstance"),
    "runtime-convergence": _r(None, get="runtimes.view_runtimeinstance"),
    # ---------------------------------------------------------------- operator API: audit
    "audit-event-list": _r(None, get="audit.view_auditevent"),
    "audit-event-detail": _r("event", True, get="audit.view_auditevent"),
    # a checkpoint counts every tenant's events: only the Admin role has this permission
    "audit-checkpoint-list": _r(None, get="audit.view_auditcheckpoint"),
    # ---------------------------------------------------------------- operator API: releases
    "release-list": _r("agent_id", True, get="rollouts.view_deployment"),
    "release-detail": _r("agent_environment_ids", True, get="rollouts.view_deployment"),
    "release-deploy": _r("agent_environment_ids", True, post="rollouts.add_deployment"),
    "release-rollback": _r("agent_environment_ids", True, post="rollouts.add_deployment"),
    "deployment-list": _r(None, get="rollouts.view_deployment", post="rollouts.add_deployment"),
    "deployment-detail": _r("deployment", True, get="rollouts.view_deployment"),
    "deployment-rollback": _r(None, post="rollouts.add_deployment"),
    # ---------------------------------------------------------------- operator API: rollouts
    "rollout-list": _r(None, get="rollouts.view_rollout", post="rollouts.add_rollout"),
    "rollout-detail": _r("rollout", True, get="rollouts.view_rollout"),
    "rollout-advance": _r("rollout", True, post="rollouts.change_rollout"),
    "rollout-pause": _r("rollout", True, post="rollouts.change_rollout"),
    "rollout-resume": _r("rollout", True, post="rollouts.change_rollout"),
    "rollout-abort": _r("rollout", True, post="rollouts.change_rollout"),
    "rollout-rollback": _r("rollout", True, post="rollouts.change_rollout"),
    "rollout-complete": _r("rollout", True, post="rollouts.change_rollout"),
    "rollout-shrink": _r("rollout", True, post="rollouts.change_rollout"),
    "rollout-plan-detail": _r(
        "environment_id", True, get="rollouts.view_rolloutplan", put="rollouts.change_rolloutplan"
    ),
    # ---------------------------------------------------------------- operator API: bundles
    "bundle-version-list": _r(
        "agent_id", True, get="bundles.view_bundleversion", post="bundles.add_bundleversion"
    ),
    "bundle-version-diff": _r("agent_id", True, get="bundles.view_bundleversion"),
    "bundle-version-detail": _r("version", True, get="bundles.view_bundleversion"),
    "bundle-version-yaml": _r("version", True, get="bundles.view_bundleversion"),
    "bundle-version-json": _r("version", True, get="bundles.view_bundleversion"),
    "bundle-evaluation-list": _r(
        "version", True, get="bundles.view_evaluation", post="bundles.add_evaluation"
    ),
    "bundle-validate": _r(None, post=LOGGED_IN),
    "bundle-schema": _r(None, get=PUBLIC),
    "promotion-gate-list": _r(None, get="bundles.view_promotiongate"),
    "promotion-gate-detail": _r(
        "environment_id",
        True,
        get="bundles.view_promotiongate",
        put="bundles.change_promotiongate",
    ),
    # ---------------------------------------------------------------- operator API: flags
    "flag-list": _r(None, get="flags.view_flag", post="flags.add_flag"),
    "flag-import-": _r(None, post="flags.add_flag"),
    "flag-detail": _r(
        "flag",
        True,
        get="flags.view_flag",
        patch="flags.change_flag",
        delete="flags.delete_flag",
    ),
    "flag-toggle": _r("flag", True, post="flags.change_flag"),
    "flag-usage": _r("flag", True, get="flags.view_flag"),
    "alert-list": _r(None, get="alerts.view_alert"),
    "alert-detail": _r("alert", True, get="alerts.view_alert"),
    "alert-acknowledge": _r("alert", True, post="alerts.change_alert"),
    "alert-channel-list": _r(None, get="alerts.view_alertchannel", post="alerts.add_alertchannel"),
    "alert-channel-detail": _r(
        "alert_channel",
        True,
        get="alerts.view_alertchannel",
        patch="alerts.change_alertchannel",
        delete="alerts.delete_alertchannel",
    ),
    "alert-channel-deliveries": _r("alert_channel", True, get="alerts.view_alertchannel"),
    "alert-channel-rotate-secret": _r("alert_channel", True, post="alerts.change_alertchannel"),
    "approval-list": _r(None, get="approvals.view_approvalrequest"),
    "approval-detail": _r("pk_approval", True, get="approvals.view_approvalrequest"),
    "approval-decide": _r("pk_approval", True, post="approvals.decide_approvalqueue"),
    "approval-decide-many": _r(None, post="approvals.decide_approvalqueue"),
    "approval-queue-list": _r(
        None, get="approvals.view_approvalqueue", post="approvals.add_approvalqueue"
    ),
    "approval-queue-detail": _r(
        "pk_approval_queue",
        True,
        get="approvals.view_approvalqueue",
        put="approvals.change_approvalqueue",
        patch="approvals.change_approvalqueue",
        delete="approvals.delete_approvalqueue",
    ),
    "budget-list": _r(None, get="budgets.view_budget", post="budgets.add_budget"),
    "budget-detail": _r(
        "budget",
        True,
        get="budgets.view_budget",
        put="budgets.change_budget",
        patch="budgets.change_budget",
        delete="budgets.delete_budget",
    ),
    "budget-status": _r("budget", True, get="budgets.view_budget"),
    "segment-list": _r(None, get="flags.view_segment", post="flags.add_segment"),
    "segment-detail": _r(
        "segment",
        True,
        get="flags.view_segment",
        patch="flags.change_segment",
        delete="flags.delete_segment",
    ),
    "kill-switch-list": _r(None, get="flags.view_killswitch", post="flags.add_killswitch"),
    "kill-switch-detail": _r("kill_switch", True, get="flags.view_killswitch"),
    "kill-switch-release": _r("kill_switch", True, post="flags.change_killswitch"),
    # ---------------------------------------------------------------- runtime and client API
    "runtime-keys": _r(None, get=PUBLIC),
    "runtime-heartbeat": _r(None, post=RUNTIME),
    "runtime-records": _r(None, post=RUNTIME),
    "runtime-otlp-traces": _r(None, post=RUNTIME),
    "unleash-client-register": _r(None, post=RUNTIME),
    "unleash-client-metrics": _r(None, post=RUNTIME),
    # ---------------------------------------------------------------- UI: tenancy
    "tenancy:tenant_list": _r(None, get="tenancy.view_tenant"),
    "tenancy:tenant_create": _r(None, get="tenancy.add_tenant", post="tenancy.add_tenant"),
    "tenancy:tenant_switch": _r(None, post=LOGGED_IN),
    "tenancy:tenant_detail": _r("slug", True, get="tenancy.view_tenant"),
    "tenancy:tenant_edit": _r(
        "slug", True, get="tenancy.change_tenant", post="tenancy.change_tenant"
    ),
    "tenancy:tenant_archive": _r("slug", True, post="tenancy.change_tenant"),
    "tenancy:tenant_restore": _r("slug", True, post="tenancy.change_tenant"),
    "tenancy:environment_create": _r(
        "slug", True, get="tenancy.add_environment", post="tenancy.add_environment"
    ),
    "tenancy:environment_edit": _r(
        "pk_environment", True, get="tenancy.change_environment", post="tenancy.change_environment"
    ),
    "tenancy:environment_move": _r("pk_environment", True, post="tenancy.change_environment"),
    "tenancy:environment_archive": _r("pk_environment", True, post="tenancy.change_environment"),
    "tenancy:environment_restore": _r("pk_environment", True, post="tenancy.change_environment"),
    "tenancy:agent_list": _r(None, get="tenancy.view_agent"),
    "tenancy:agent_create": _r(None, get="tenancy.add_agent", post="tenancy.add_agent"),
    "tenancy:agent_detail": _r("pk_agent", True, get="tenancy.view_agent"),
    "telemetry:agent_telemetry": _r("pk_agent", True, get="telemetry.view_requestrecord"),
    "telemetry:records": _r("pk_agent", True, get="telemetry.view_requestrecord"),
    "telemetry:session_export": _r("pk_agent", True, get="telemetry.view_requestrecord"),
    "telemetry:record_detail": _r("pk_record", True, get="telemetry.view_requestrecord"),
    "telemetry:record_export": _r("pk_record", True, get="telemetry.view_requestrecord"),
    "alerts:list": _r(None, get="alerts.view_alert"),
    "alerts:badge": _r(None, get="alerts.view_alert"),
    "alerts:acknowledge": _r("pk_alert", True, post="alerts.change_alert"),
    "alerts:channel_create": _r(
        None, get="alerts.add_alertchannel", post="alerts.add_alertchannel"
    ),
    "alerts:channel_edit": _r(
        "pk_alert_channel",
        True,
        get="alerts.change_alertchannel",
        post="alerts.change_alertchannel",
    ),
    "alerts:channel_rotate": _r(
        "pk_alert_channel",
        True,
        get="alerts.change_alertchannel",
        post="alerts.change_alertchannel",
    ),
    "alerts:channel_delete": _r(
        "pk_alert_channel",
        True,
        get="alerts.delete_alertchannel",
        post="alerts.delete_alertchannel",
    ),
    "budgets:list": _r(None, get="budgets.view_budget"),
    "budgets:create": _r(None, get="budgets.add_budget", post="budgets.add_budget"),
    "budgets:preview": _r(None, get="budgets.view_budget"),
    "budgets:detail": _r("pk_budget", True, get="budgets.view_budget"),
    "budgets:edit": _r(
        "pk_budget", True, get="budgets.change_budget", post="budgets.change_budget"
    ),
    "budgets:delete": _r(
        "pk_budget", True, get="budgets.delete_budget", post="budgets.delete_budget"
    ),
    "reviews:queue": _r("pk_agent", True, get="reviews.view_reviewgrade"),
    "reviews:grade": _r("pk_agent", True, post="reviews.add_reviewgrade"),
    "reviews:policy": _r("pk_agent", True, post="reviews.change_reviewpolicy"),
    "tenancy:agent_edit": _r(
        "pk_agent", True, get="tenancy.change_agent", post="tenancy.change_agent"
    ),
    "tenancy:agent_archive": _r("pk_agent", True, post="tenancy.change_agent"),
    "tenancy:agent_restore": _r("pk_agent", True, post="tenancy.change_agent"),
    # ---------------------------------------------------------------- UI: accounts
    "accounts:user_list": _r(None, get="auth.view_user"),
    "accounts:user_create": _r(None, get="auth.add_user", post="auth.add_user"),
    "accounts:user_edit": _r("pk_user", get="auth.change_user", post="auth.change_user"),
    "accounts:user_password_reset": _r("pk_user", get="auth.change_user", post="auth.change_user"),
    "accounts:profile": _r(None, get=LOGGED_IN),
    "accounts:password_change": _r(None, get=LOGGED_IN, post=LOGGED_IN),
    "accounts:api_token_rotate": _r(None, post=LOGGED_IN),
    # ---------------------------------------------------------------- UI: audit
    "audit:event_list": _r(None, get="audit.view_auditevent"),
    "audit:event_detail": _r("pk_event", True, get="audit.view_auditevent"),
    # ---------------------------------------------------------------- UI: bundles
    "bundles:index": _r(None, get="bundles.view_bundleversion"),
    "bundles:gate_list": _r(None, get="bundles.view_promotiongate"),
    "bundles:gate_edit": _r(
        "environment_pk",
        True,
        get="bundles.change_promotiongate",
        post="bundles.change_promotiongate",
    ),
    "bundles:agent_versions": _r("agent_pk", True, get="bundles.view_bundleversion"),
    "bundles:version_new": _r(
        "agent_pk", True, get="bundles.add_bundleversion", post="bundles.add_bundleversion"
    ),
    "bundles:version_diff": _r("agent_pk", True, get="bundles.view_bundleversion"),
    "bundles:agent_summary": _r("agent_pk", True, get="bundles.view_bundleversion"),
    "bundles:version_detail": _r("agent_pk_number", True, get="bundles.view_bundleversion"),
    "bundles:version_yaml": _r("agent_pk_number", True, get="bundles.view_bundleversion"),
    "bundles:version_json": _r("agent_pk_number", True, get="bundles.view_bundleversion"),
    # ---------------------------------------------------------------- UI: runtimes
    "runtimes:overview": _r(None, get="runtimes.view_runtimeinstance"),
    "runtimes:environment_live": _r("pk_environment", True, get="runtimes.view_runtimeinstance"),
    "runtimes:propagation": _r(None, get="runtimes.view_runtimeinstance"),
    "runtimes:convergence_badge": _r("pk_environment", True, get="runtimes.view_runtimeinstance"),
    "runtimes:token_new": _r(
        None, get="accounts.add_runtimetoken", post="accounts.add_runtimetoken"
    ),
    "runtimes:token_revoke": _r("pk_runtime_token", True, post="accounts.change_runtimetoken"),
    # ---------------------------------------------------------------- UI: rollouts
    "rollouts:agent_releases": _r("pk_agent", True, get="rollouts.view_deployment"),
    "rollouts:deploy": _r("pk_agent", True, post="rollouts.add_deployment"),
    "rollouts:rollback": _r("agent_environment", True, post="rollouts.add_deployment"),
    "rollouts:rollout_start": _r(
        "pk_agent", True, get="rollouts.add_rollout", post="rollouts.add_rollout"
    ),
    "rollouts:rollout_list": _r(None, get="rollouts.view_rollout"),
    "rollouts:rollout_detail": _r("pk_rollout", True, get="rollouts.view_rollout"),
    "rollouts:rollout_live": _r("pk_rollout", True, get="rollouts.view_rollout"),
    "rollouts:rollout_charts": _r("pk_rollout", True, get="rollouts.view_rollout"),
    "rollouts:rollout_action": _r("rollout_event", True, post="rollouts.change_rollout"),
    "rollouts:plan_edit": _r(
        "pk_environment", True, get="rollouts.view_rolloutplan", post="rollouts.change_rolloutplan"
    ),
    # ---------------------------------------------------------------- UI: flags
    "flags:flag_list": _r(None, get="flags.view_flag"),
    "flags:flag_create": _r(None, get="flags.add_flag", post="flags.add_flag"),
    "flags:flag_import": _r(None, get="flags.add_flag", post="flags.add_flag"),
    "flags:flag_detail": _r("pk_flag", True, get="flags.view_flag"),
    "flags:flag_edit": _r("pk_flag", True, get="flags.change_flag", post="flags.change_flag"),
    "flags:flag_toggle": _r("pk_flag", True, post="flags.change_flag"),
    "flags:flag_delete": _r("pk_flag", True, post="flags.delete_flag"),
    "flags:segment_create": _r(None, get="flags.add_segment", post="flags.add_segment"),
    "flags:segment_edit": _r(
        "pk_segment", True, get="flags.change_segment", post="flags.change_segment"
    ),
    "flags:segment_delete": _r("pk_segment", True, post="flags.delete_segment"),
    "flags:kill_switch_list": _r(None, get="flags.view_killswitch"),
    "flags:kill_switch_engage": _r(None, get="flags.add_killswitch", post="flags.add_killswitch"),
    "flags:kill_switch_release": _r("pk_kill_switch", True, post="flags.change_killswitch"),
    # ---------------------------------------------------------------- UI: approvals
    "approvals:inbox": _r(None, get="approvals.view_approvalrequest"),
    "approvals:list": _r(None, get="approvals.view_approvalrequest"),
    "approvals:health": _r(None, get="approvals.view_approvalrequest"),
    "approvals:detail": _r("pk_approval", True, get="approvals.view_approvalrequest"),
    "approvals:decide": _r("pk_approval", True, post="approvals.decide_approvalqueue"),
    "approvals:bulk": _r(None, post="approvals.decide_approvalqueue"),
    "approvals:queue_list": _r(None, get="approvals.view_approvalqueue"),
    "approvals:queue_create": _r(
        None, get="approvals.add_approvalqueue", post="approvals.add_approvalqueue"
    ),
    "approvals:queue_edit": _r(
        "pk_approval_queue",
        True,
        get="approvals.change_approvalqueue",
        post="approvals.change_approvalqueue",
    ),
    "approvals:queue_delete": _r(
        "pk_approval_queue",
        True,
        get="approvals.delete_approvalqueue",
        post="approvals.delete_approvalqueue",
    ),
    # ---------------------------------------------------------------- UI: dashboard
    "dashboard:overview": _r(None, get=LOGGED_IN),
    "dashboard:overview_live": _r(None, get=LOGGED_IN),
    "dashboard:incident": _r("agent_environment_ids", True, get="tenancy.view_agent"),
    "dashboard:doc": _r("doc", get=LOGGED_IN),
    "dashboard:doc_screenshot": _r("doc_screenshot", get=LOGGED_IN),
    "dashboard:incident_propagation": _r("agent_environment_ids", True, get="tenancy.view_agent"),
    "dashboard:incident_stop_harm": _r("agent_environment_ids", True, post="flags.add_killswitch"),
    "dashboard:incident_rollback": _r(
        "agent_environment_ids", True, post="rollouts.add_deployment"
    ),
    "dashboard:incident_pause": _r("agent_environment_ids", True, post="rollouts.change_rollout"),
    "dashboard:incident_shrink": _r("agent_environment_ids", True, post="rollouts.change_rollout"),
}


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if str(pattern.pattern).startswith("django-admin"):
                continue  # Django's admin: its own permission system (issue 9, item 9)
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            yield f"{namespace}{pattern.name}", prefix + str(pattern.pattern)


URLS = dict(_walk(get_resolver().url_patterns))


def test_every_route_has_a_matrix_entry() -> None:
    missing = sorted(set(URLS) - set(ROUTES))
    assert not missing, (
        f"Add these routes to ROUTES with the permission each method needs: {missing}"
    )
    assert not sorted(set(ROUTES) - set(URLS)), "ROUTES names routes that no longer exist"


# ---------------------------------------------------------------------------------- world


def _rows() -> dict[str, int]:
    return row_counts(except_apps={"sessions", "contenttypes", "admin"})


@pytest.fixture
def world(tenant: Tenant, other_tenant: Tenant) -> dict[str, Any]:
    from django.contrib.auth.models import User

    from apps.bundles.models import BundleVersion
    from apps.flags.services import flag_create, kill_switch_engage, segment_create

    development = tenant.environments.get(slug="development")
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    version: BundleVersion = bundle_version_push(
        actor=ACTOR, agent=agent, source=demo_text("refund-agent-v1"), message="one"
    ).version
    flag = flag_create(actor=ACTOR, environment=development, name="checkout", reason="m")
    segment = segment_create(
        actor=ACTOR,
        environment=development,
        name="beta",
        constraints=[{"contextName": "userId", "operator": "IN", "values": ["1"]}],
        reason="m",
    )
    kill_switch = kill_switch_engage(
        actor=ACTOR,
        kind="agent_stopped",
        scope="agent",
        tenant=tenant,
        agent=agent,
        reason="matrix",
    )
    # a running rollout of v2 (v1 stable) for the rollout routes
    candidate = bundle_version_push(
        actor=ACTOR,
        agent=agent,
        source=demo_text("refund-agent-v1").replace("within policy", "within the policy"),
        message="two",
    ).version
    deployment_create(
        actor=ACTOR, agent=agent, environment=development, version=version, reason="matrix"
    )
    rollout = rollout_start(
        actor=ACTOR, agent=agent, environment=development, candidate=candidate, reason="matrix"
    )
    token_row, token = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=development, name="live"
    )
    revoked_row, revoked = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=development, name="old"
    )
    runtime_token_revoke(actor=ACTOR, token=revoked_row, reason="matrix")
    records_ingest(
        token=token_row,
        records=[
            {
                "request_id": "matrix-1",
                "agent": "support-bot",
                "session_id": "s-1",
                "variant": "stable",
                "started_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
                "latency_ms": 100,
                "cost_usd": "0.01",
                "outcome": "success",
            }
        ],
    )
    request_record = RequestRecord.objects.get(request_id="matrix-1")
    with transaction.atomic():
        alert = alert_raise(
            tenant=tenant, kind="rollout.rolled_back", severity="critical", title="m", detail=""
        )
    # Created directly: the service would resolve the URL's host, and the matrix needs no DNS.
    budget = budget_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": "hourly", "scope": "tenant", "window": "hour", "limits": {"requests": 9}},
    )
    alert_channel = AlertChannel.objects.create(
        tenant=tenant, name="pager", url="https://hooks.example.com/alerts", secret_hash="0" * 64
    )
    users = {
        name: make_user(role, other_tenant if name == "other-tenant" else tenant, username=name)
        for name, role in ROLE_OF.items()
    }
    # an approval request in a queue the "approver" and "operator" principals decide (an
    # Approver sees only the requests of its queues; a role that may decide decides only in
    # the queues it is an approver of, Admins in all)
    queue = queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": "Refunds", "approvers": [users["approver"], users["operator"]]},
    )
    arguments = {"order_id": "A-1"}
    approval = approval_open(
        tenant_id=tenant.pk,
        environment_id=development.pk,
        token_id=token_row.pk,
        token_agent_id=None,
        token_label="live",
        body={
            "idempotency_key": "matrix-1",
            "agent": "support-bot",
            "tool": "issue_refund",
            "arguments": arguments,
            "arguments_sha256": hashlib.sha256(canonical_json(arguments)).hexdigest(),
            "session_id": "s-1",
        },
    ).request
    subject = User.objects.get(username="viewer")
    event = AuditEvent.objects.filter(tenant=tenant).order_by("-pk").first()
    assert event is not None
    args: dict[str, dict[str, Any]] = {
        "tenant": {"pk": tenant.pk},
        "agent": {"pk": agent.pk},
        "environment": {"pk": development.pk},
        "user": {"pk": subject.pk},
        "runtime_token": {"pk": token_row.pk},
        "event": {"pk": event.pk},
        "agent_id": {"agent_id": agent.pk},
        "agent_environment_ids": {"agent_id": agent.pk, "environment_id": development.pk},
        "version": {"agent_id": agent.pk, "number": version.number},
        "environment_id": {"environment_id": development.pk},
        "flag": {"pk": flag.pk},
        "segment": {"pk": segment.pk},
        "kill_switch": {"pk": kill_switch.pk},
        "slug": {"slug": tenant.slug},
        "pk_environment": {"pk": development.pk},
        "pk_agent": {"pk": agent.pk},
        "pk_user": {"pk": subject.pk},
        "pk_event": {"pk": event.pk},
        "environment_pk": {"environment_pk": development.pk},
        "agent_pk": {"agent_pk": agent.pk},
        "agent_pk_number": {"agent_pk": agent.pk, "number": version.number},
        "pk_runtime_token": {"pk": token_row.pk},
        "agent_environment": {"pk": agent.pk, "environment_pk": development.pk},
        "pk_flag": {"pk": flag.pk},
        "pk_segment": {"pk": segment.pk},
        "pk_kill_switch": {"pk": kill_switch.pk},
        "pk_record": {"pk": request_record.pk},
        "alert": {"pk": alert.pk},
        "alert_channel": {"pk": alert_channel.pk},
        "pk_alert": {"pk": alert.pk},
        "pk_alert_channel": {"pk": alert_channel.pk},
        "budget": {"pk": budget.pk},
        "pk_budget": {"pk": budget.pk},
        "rollout": {"pk": rollout.pk},
        "pk_rollout": {"pk": rollout.pk},
        "rollout_event": {"pk": rollout.pk, "event": "pause"},
        "pk_approval": {"pk": approval.pk},
        "pk_approval_queue": {"pk": queue.pk},
        "deployment": {"pk": Deployment.objects.filter(agent=agent).order_by("pk")[0].pk},
        "doc": {"name": "releases"},
        "doc_screenshot": {"name": "rollout.png"},
    }
    return {"users": users, "token": token, "revoked": revoked, "args": args}


def _client(world: dict[str, Any], principal: str) -> Client:
    if principal in ("runtime-token", "revoked-token"):
        token = world["token" if principal == "runtime-token" else "revoked"]
        return Client(HTTP_AUTHORIZATION=token)
    client = Client()
    if principal in world["users"]:
        client.force_login(world["users"][principal])
    return client


def _allowed(route: Route, permission: str, principal: str) -> bool:
    if permission == PUBLIC:
        return True
    if permission == RUNTIME:
        return principal == "runtime-token"
    if principal not in ROLE_OF:
        return False
    if permission == LOGGED_IN:
        return True
    if principal == "other-tenant" and route.scoped:
        return False
    return permission in ROLE_PERMISSIONS[ROLE_OF[principal]]


def _expected_refusal(route: Route, path: str, permission: str, principal: str) -> int:
    """The status a refused principal gets (302: to the login page)."""
    api = path.startswith("/api/")
    if permission == RUNTIME or principal in ("anonymous", "runtime-token", "revoked-token"):
        return 401 if api else 302
    role_may = permission == LOGGED_IN or permission in ROLE_PERMISSIONS[ROLE_OF[principal]]
    if principal == "other-tenant" and route.scoped and role_may:
        return 404  # another tenant's object is not found, not forbidden
    return 403


def _is_login_redirect(response: Any) -> bool:
    return response.status_code == 302 and response["Location"].startswith("/login/")


def _refused_as_expected(expected: int, method: str, path: str, response: Any) -> bool:
    status = response.status_code
    if expected == 302:
        return _is_login_redirect(response)
    if status == expected:
        return True
    if method == "GET" or expected == 401:
        return False
    # Our writes carry an empty body: a view may refuse it as invalid before it reaches the
    # permission check (API: 400; UI: the form again, or back with a message). Still refused;
    # that nothing changed is checked separately.
    if path.startswith("/api/"):
        return status == 400
    return status == 200 or (status == 302 and not _is_login_redirect(response))


def _group(name: str) -> str:
    """Routes are checked in groups, one world each: the UI by app, then the operator API,
    then the rest (login, health, API docs, the runtime and client API)."""
    if ":" in name:
        return f"ui-{name.split(':', 1)[0]}"
    if URLS.get(name, "").startswith("api/v1/"):
        return "operator-api"
    return "project-and-runtime-api"


GROUPS = sorted({_group(name) for name in ROUTES})


@pytest.mark.parametrize("group", GROUPS)
def test_routes__every_principal__allowed_or_refused_and_refusals_change_nothing(
    world: dict[str, Any], group: str
) -> None:
    clients = {principal: _client(world, principal) for principal in PRINCIPALS}
    problems: list[str] = []
    for name in sorted(n for n in ROUTES if _group(n) == group):
        problems += _check_route(world, clients, name)
    assert not problems, "\n".join(problems)


def _check_route(world: dict[str, Any], clients: dict[str, Client], name: str) -> list[str]:
    route = ROUTES[name]
    path = reverse(name, kwargs=world["args"][route.args] if route.args else None)
    problems = []
    for principal in PRINCIPALS:
        for method, permission in route.methods.items():
            allowed = _allowed(route, permission, principal)
            if allowed and method == "DELETE":
                continue  # it would delete the object the other principals are checked on
            write = method != "GET"
            before = (_rows(), AuditEvent.objects.count()) if write and not allowed else None
            call: Callable[..., Any] = getattr(clients[principal], method.lower())
            response = call(path, content_type="application/json") if write else call(path)
            status = response.status_code
            cell = f"{principal} {method} {path}"
            if allowed:
                refused = status in (401, 403) or (
                    _is_login_redirect(response) and name != "logout"
                )
                if refused or status >= 500 or (status == 404 and route.scoped):
                    problems.append(f"{cell}: expected allowed, got {status}")
                continue
            expected = _expected_refusal(route, path, permission, principal)
            if not _refused_as_expected(expected, method, path, response):
                problems.append(f"{cell}: expected {expected}, got {status}")
            if before is not None and before != (_rows(), AuditEvent.objects.count()):
                problems.append(f"{cell}: refused, yet rows or audit events changed")
    return problems
