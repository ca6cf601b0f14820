"""The Overview (issue 17, part A): one row per agent x environment with the stable version,
the candidate and its latest verdict, health over the last hour with sparklines, budget
burn, waiting approvals, kill switches and convergence; the incident timeline linking each
cause; the live part; a query count that does not grow with the rows; rollups only."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.safestring import mark_safe

from apps.accounts.runtime_tokens import runtime_token_create
from apps.alerts.services import alert_raise
from apps.approvals.services import approval_open, queue_create
from apps.audit.services import SystemActor
from apps.budgets.selectors import budget_burn_for
from apps.budgets.services import budget_create
from apps.budgets.windows import window_bounds
from apps.bundles.services import bundle_version_push
from apps.core.roles import Role
from apps.dashboard.rows import BudgetCell, CandidateCell, PendingCell, RowFace, draw_row
from apps.dashboard.sparklines import sparkline
from apps.flags.models import KillSwitch
from apps.flags.services import kill_switch_engage, kill_switch_release
from apps.rollouts.services import deployment_create, rollout_start
from apps.runtimes.selectors import nack_storms
from apps.runtimes.services import runtime_heartbeat_record
from apps.telemetry.services import records_ingest
from apps.tenancy.models import Agent, Environment, Tenant

from ..approvals.conftest import CONTRACT, body
from ..factories import AgentFactory, EnvironmentFactory, TenantFactory, make_user
from ..telemetry.conftest import record

ACTOR = SystemActor("overview-tests")


def _contract(n: int) -> dict[str, Any]:
    content = copy.deepcopy(CONTRACT)
    content["description"] = f"Issues refunds (release {n})."
    return content


def _world(tenant: Tenant, agents: int) -> list[Agent]:
    """``agents`` agents, each in every environment of ``tenant``: v1 stable (v2 in a
    rollout in the first environment), an hour of traffic, a waiting approval; a per-agent
    budget; a kill switch."""
    made = []
    environments = list(tenant.environments.order_by("position"))
    tokens = {
        e.pk: runtime_token_create(actor=ACTOR, tenant=tenant, environment=e, name=f"t-{e.slug}")[0]
        for e in environments
    }
    queue_create(actor=ACTOR, tenant=tenant, data={"name": "Reads", "match_tools": ["*"]})
    now = datetime.now(UTC)
    for i in range(agents):
        agent = AgentFactory(tenant=tenant, slug=f"refund-agent-{i}", name=f"Refund agent {i}")
        v1, v2 = (
            bundle_version_push(actor=ACTOR, agent=agent, content=_contract(n), message=f"v{n}")
            for n in (1, 2)
        )
        for environment in environments:
            deployment_create(
                actor=ACTOR,
                agent=agent,
                environment=environment,
                version=v1.version,
                reason="first release",
            )
            if environment == environments[0]:  # promotion gates: the first one first
                rollout_start(
                    actor=ACTOR,
                    agent=agent,
                    environment=environment,
                    candidate=v2.version,
                    reason="kinder tone",
                )
            records_ingest(
                token=tokens[environment.pk],
                records=[
                    record(
                        agent=agent.slug,
                        started_at=(now - timedelta(minutes=m, seconds=10)).isoformat(),
                        latency_ms=100 + m,
                        outcome="error" if m % 4 == 0 else "success",
                    )
                    for m in range(0, 50, 5)
                ],
            )
            _open_approval(
                agent,
                environment,
                f"{agent.slug}-{environment.slug}",
                now=timezone.now() - timedelta(minutes=12),
            )
        made.append(agent)
    budget_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "Per agent daily",
            "scope": "tenant_agent",
            "window": "day",
            "limits": {"cost_usd": "1.00"},
            "action": "alert",
        },
    )
    kill_switch_engage(
        actor=ACTOR,
        kind="tool_disabled",
        scope="tenant",
        tenant=tenant,
        tool_pattern="issue_refund",
        reason="refunds double-charged",
    )
    return made


def _open_approval(
    agent: Agent, environment: Environment, key: str, *, now: datetime | None = None
) -> None:
    """A waiting approval of ``agent`` in ``environment`` (``key``: its idempotency key)."""
    approval_open(
        tenant_id=agent.tenant_id,
        environment_id=environment.pk,
        token_id=None,
        token_agent_id=None,
        token_label="fleet",
        body=body(
            agent=agent.slug,
            tool="lookup_order",
            arguments={"order_id": key},
            idempotency_key=key,
            session_id=f"s-{key}",
        ),
        now=now,
    )


def _tenant(slug: str, environments: int) -> Tenant:
    tenant = TenantFactory(slug=slug, name=slug.title())
    for position in range(environments):
        EnvironmentFactory(tenant=tenant, slug=f"env-{position}", position=position)
    return tenant


def _html(client: Client, url: str = "/") -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def _row(html: str, agent: Agent, environment: Environment) -> str:
    found = re.search(rf'<tr id="row-{agent.pk}-{environment.pk}".*?</tr>', html, re.S)
    assert found is not None, f"no row for {agent.slug} in {environment.slug}"
    return found.group(0)


def test_overview__a_row__shows_every_part(tenant: Tenant) -> None:
    agent = _world(tenant, 1)[0]
    production = tenant.environments.get(slug="production")
    client = Client()
    client.force_login(make_user(Role.OPERATOR, tenant))
    html = _html(client)
    development = tenant.environments.get(slug="development")
    assert ">v2</a>" in _row(html, agent, development)
    assert "not analysed yet" in _row(html, agent, development)  # no analysis tick yet
    row = _row(html, agent, production)

    assert f'href="/incidents/{agent.pk}/{production.pk}/"' in row
    assert "<strong>v1</strong>" in row
    assert row.count("<svg") == 4  # request rate, error rate, latency, cost per request
    assert "10 requests" not in row  # the rate is per minute over the hour: 10/60
    assert "0.2/min" in row and "30.0%" in row  # 3 of 10 requests failed (m = 0, 20, 40)
    assert "<title>Error rate of Refund agent 0 in Production" in row
    assert " ms</span>" in row and "$0.0125</span>" in row
    assert "% used</a>" in row and "Per agent daily: " in row and "of day gone" in row
    assert (
        f'href="/approvals/?agent={agent.slug}&amp;environment=production"' in row
        and "1 waiting" in row
    )
    assert "oldest 12\xa0minutes" in row
    assert "1 engaged</a>" in row
    assert 'data-testid="convergence-badge"' in row


def test_overview__rows_drawn_before__drawn_again_when_what_they_show_changes(
    tenant: Tenant,
) -> None:
    # rows are remembered per process by every value they show (apps/dashboard/rows.py): a
    # reload after a deployment, a released kill switch and a new approval shows all three
    agent = _world(tenant, 1)[0]
    production = tenant.environments.get(slug="production")
    client = Client()
    client.force_login(make_user(Role.OPERATOR, tenant))
    before = _row(_html(client), agent, production)
    assert _row(_html(client), agent, production) == before  # nothing changed: the same row
    assert "<strong>v1</strong>" in before and "1 engaged</a>" in before
    assert "1 waiting" in before

    deployment_create(
        actor=ACTOR,
        agent=agent,
        environment=production,
        version=agent.bundle_versions.get(number=2),
        reason="kinder tone everywhere",
    )
    switch = KillSwitch.objects.get(tenant=tenant)
    kill_switch_release(actor=ACTOR, switch=switch, reason="fixed")
    _open_approval(agent, production, "second")
    after = _row(_html(client), agent, production)
    assert "<strong>v2</strong>" in after and "<strong>v1</strong>" not in after
    assert "engaged</a>" not in after and '<span class="badge ok">none</span>' in after
    assert "2 waiting" in after


def test_overview__viewer__sees_rows_and_an_outsider_sees_none(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    agent = _world(tenant, 1)[0]
    viewer = Client()
    viewer.force_login(make_user(Role.VIEWER, tenant))
    assert f'id="row-{agent.pk}-' in _html(viewer)
    outsider = Client()
    outsider.force_login(make_user(Role.OPERATOR, other_tenant))
    html = _html(outsider)
    assert "Refund agent" not in html and "refunds double-charged" not in html


def _queries(client: Client, url: str, *, cold: bool) -> list[str]:
    client.get(url)  # warm the session and content-type caches
    if cold:
        cache.clear()  # the health figures of the minute are computed again
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return [q["sql"] for q in captured.captured_queries]


# The page around the live part adds the session, the user, the tenant switcher and the
# "Recent changes" table (ten audit events, each linking to its event's page).
PAGE_BUDGET = 24


def test_overview__query_count__same_for_one_row_and_twelve() -> None:
    """1 agent x 1 environment and 4 agents x 3 environments: the live part makes the same
    number of queries, the page stays within its budget, and none reads raw request
    records (rollups only)."""
    small, big = _tenant("small", 1), _tenant("big", 3)
    _world(small, 1)
    _world(big, 4)
    counts = []
    for tenant, rows in ((small, 1), (big, 12)):
        client = Client()
        client.force_login(make_user(Role.OPERATOR, tenant))
        live = _queries(client, "/overview/live/", cold=True)
        cached = _queries(client, "/overview/live/", cold=False)
        page = _queries(client, "/", cold=True)
        assert _html(client).count('<tr id="row-') == rows
        assert not [q for q in live + page if "telemetry_requestrecord" in q]
        assert [q for q in live if "telemetry_minuterollup" in q]  # read once a minute
        assert not [q for q in cached if "telemetry_" in q]  # then from the cache
        assert len(page) <= PAGE_BUDGET, len(page)
        counts.append((len(live), len(cached)))
    assert counts[0] == counts[1], counts


def test_overview_live__the_rows_and_timeline_only(tenant: Tenant) -> None:
    _world(tenant, 1)
    client = Client()
    client.force_login(make_user(Role.OPERATOR, tenant))
    html = _html(client, "/overview/live/")
    assert html.lstrip().startswith('<div id="overview-live"')
    assert "<html" not in html and 'id="overview-timeline"' in html
    page = _html(client)
    assert 'hx-get="/overview/live/"' in page
    # paused by the top bar's one toggle (static/js/app.js), shown on pages that refresh
    assert 'id="live-toggle"' in page and 'aria-pressed="false"' in page


def test_timeline__each_kind__listed_with_a_link_to_its_cause(tenant: Tenant) -> None:
    agent = _world(tenant, 1)[0]
    production = tenant.environments.get(slug="production")
    alert_raise(
        tenant=tenant,
        kind="rollout.rolled_back",
        severity="critical",
        title="Refund agent 0 v2 rolled back in Production: error rate",
        detail="failing",
        link="/rollouts/1/",
    )
    alert_raise(
        tenant=tenant,
        kind="approval.expired",
        severity="warning",
        title="Approval request #9 (lookup_order) expired undecided",
        detail="nobody",
        link="/approvals/?request=9",
    )
    alert_raise(tenant=tenant, kind="budget.threshold", severity="warning", title="80 %", detail="")
    token = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="f")[0]
    revision = production.revision
    for n in range(3):  # three runtimes refuse the current revision: a storm
        runtime_heartbeat_record(
            token=token,
            instance_id=f"rt-{n}",
            report="nack",
            revision=revision,
            error="unknown tool",
        )
    client = Client()
    client.force_login(make_user(Role.OPERATOR, tenant))
    timeline = re.search(r'<ol id="overview-timeline".*?</ol>', _html(client), re.S)
    assert timeline is not None
    text = timeline.group(0)
    assert 'Automatic rollback</span> <a href="/rollouts/1/">' in text
    assert 'Approval expired</span> <a href="/approvals/?request=9">' in text
    assert 'Budget alert</span> <a href="/alerts/">' in text
    assert "Kill switch engaged</span>" in text and "refunds double-charged" in text
    assert (
        f'NACK storm</span> <a href="/runtimes/#environment-{production.pk}">'
        f"3 runtimes in Production refused revision {revision}: unknown tool" in text
    )
    assert agent.slug  # the world's agent is there; its row is covered above


def test_sparkline__values_as_text_and_gaps() -> None:
    svg = sparkline([1.0, None, 3.0, 2.0], label="Requests", summary="1, none, 3, 2")
    assert svg.startswith('<svg class="spark" role="img" aria-label="Requests: 1, none, 3, 2"')
    assert "<title>Requests: 1, none, 3, 2</title>" in svg
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1  # the gap splits the line
    empty = sparkline([None, None], label="Errors", summary="none")
    assert "stroke-dasharray" in empty
    assert "&lt;b&gt;" in sparkline([1.0], label="<b>", summary="x")


def test_budget_burn__the_tightest_budget_that_applies_to_each_row(tenant: Tenant) -> None:
    now = datetime.now(UTC)

    def margin(zone: str) -> timedelta:
        start, end = window_bounds("day", now, zone)
        return min(now - start, end - now)

    # The day window of a zone where now is hours from both ends: the records (up to 45
    # minutes old, stamped by the world's own clock a moment later) and the burn read below
    # fall in one day; UTC alone put some of them in yesterday in the first 50 minutes of a
    # day, and one day in the expectation but another in the product across midnight.
    tenant.time_zone = max(("UTC", "Asia/Tokyo", "America/New_York"), key=margin)
    tenant.save(update_fields=["time_zone"])
    first, second = _world(tenant, 2)  # + "Per agent daily": $1 a day for each agent
    production = tenant.environments.get(slug="production")
    staging = tenant.environments.get(slug="staging")
    budget_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "First in production",
            "scope": "agent",
            "agent": first,
            "environment": production,
            "window": "day",
            "limits": {"cost_usd": "0.25"},
            "action": "alert",
        },
    )
    burns = budget_burn_for(
        user=make_user(Role.OPERATOR, tenant),
        tenant_id=tenant.pk,
        agent_ids=[first.pk, second.pk],
        environment_ids=[staging.pk, production.pk],
    )
    # 10 requests at $0.0125 in each of 3 environments, 0-45 minutes ago: $0.125 here, $0.375
    # for the agent, all in today's window
    mine = burns[(first.pk, production.pk)]
    expected = Decimal(50)
    assert (mine.budget.name, mine.percent) == ("First in production", expected)
    assert mine.ahead_of_time == (mine.elapsed_percent < expected)
    for key in ((first.pk, staging.pk), (second.pk, production.pk)):
        assert (burns[key].budget.name, burns[key].percent) == (
            "Per agent daily",
            Decimal("37.5"),
        )


def test_nack_storms__three_runtimes_on_one_revision__one_storm_two__none(
    tenant: Tenant,
) -> None:
    production = tenant.environments.get(slug="production")
    token = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="f")[0]
    since = timezone.now() - timedelta(minutes=5)
    for n in range(2):
        runtime_heartbeat_record(
            token=token, instance_id=f"rt-{n}", report="nack", revision=production.revision
        )
    assert nack_storms(tenant_id=tenant.pk, since=since) == []
    runtime_heartbeat_record(
        token=token, instance_id="rt-2", report="nack", revision=production.revision
    )
    (storm,) = nack_storms(tenant_id=tenant.pk, since=since)
    assert (storm.environment_id, storm.revision, storm.runtimes) == (
        production.pk,
        production.revision,
        3,
    )


def test_overview_health__without_date_bin__binned_the_same(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # make run's SQLite has no date_bin: its path bins minute sums in Python, to the same figures
    from django.db import connection

    from apps.telemetry.selectors import overview_health

    agent = _world(tenant, 1)[0]
    environments = [e.pk for e in tenant.environments.all()]
    now = timezone.now()
    in_the_database = overview_health(
        tenant=tenant, agent_ids=[agent.pk], environment_ids=environments, now=now
    )
    monkeypatch.setattr(connection, "vendor", "sqlite-like")
    in_python = overview_health(
        tenant=tenant, agent_ids=[agent.pk], environment_ids=environments, now=now
    )

    assert any(p.requests for h in in_the_database.values() for p in h.points)
    for key, health in in_the_database.items():
        assert health.points == in_python[key].points, key
        assert health.p95_ms == in_python[key].p95_ms


def test_draw_row__every_text_of_the_face__escaped() -> None:
    # rows are drawn with f-strings (apps/dashboard/rows.py): every text must be escaped as a
    # template would, and only the sparklines and the badge pass as HTML
    bad = "<b>\"x\" & 'y'</b>"
    face = RowFace(
        script_prefix="/",
        agent_id=1,
        agent_slug=bad,
        agent_name=bad,
        environment_id=2,
        environment_slug=bad,
        environment_name=bad,
        is_production=True,
        stable=(3, True),
        candidate=CandidateCell(4, 5, bad, bad, bad),
        health=((bad, mark_safe("<svg></svg>")),) * 4,
        health_shown=True,
        budget=BudgetCell(6, bad, bad, bad, bad, bad, bad),
        pending=PendingCell(7, bad),
        inbox_url=bad,
        kill_switches=(bad, 1),
        kill_switches_url=bad,
        convergence=mark_safe("<span>badge</span>"),
    )
    html = draw_row(face)
    assert "<b>" not in html and "'y'" not in html and '"x"' not in html
    assert html.count("&lt;b&gt;&quot;x&quot; &amp; &#x27;y&#x27;&lt;/b&gt;") >= 20
    assert html.count("<svg></svg>") == 4 and "<span>badge</span>" in html
