"""The scenario of issue 13, end to end: a simulated ``support-bot`` whose search tool loops (each
request would make 80-100 tool calls) serves production through the real server (the fast
path's snapshot and reservations, the records API), against a strict $5/hour agent budget
with action block, under a bundle cap of 20 tool calls per request.

- every looping request is cut at the cap and reported ``budget_blocked`` / ``cap:max_tool_calls``;
- the hour's budget runs out: the 50%, 80% and 100% alerts fire once each, every runtime is
  told (the snapshot's state), and requests are refused ``budget:<id>`` without a step taken;
- what was spent passes the limit by at most the steps in flight (each runtime has one at a
  time, so at most three steps' cost over their estimates); the counter is the exact sum of
  the records;
- the window rolls over (the server's clock moved an hour on; the beat's ``budgets_roll``
  runs) and traffic resumes with no human involved.

Time is real but short: a step costs about a cent (gpt-4o reading a long system prompt), so
$5 is gone in some 25 requests."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts.runtime_tokens import runtime_token_create
from apps.alerts.models import Alert
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.budgets.models import BudgetUsage
from apps.budgets.selectors import budgets_for_snapshot
from apps.budgets.services import budget_create, budgets_roll
from apps.budgets.windows import window_bounds
from apps.bundles.services import bundle_version_push
from apps.rollouts.services import deployment_create
from apps.telemetry.models import RequestRecord
from apps.tenancy.models import Agent, Tenant
from dataplane.client import Backoff
from dataplane.simulate import Fleet
from dataplane.simulate.agent import Traits

from ..factories import AgentFactory
from ..races import postgresql_only
from ..waiting import eventually

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")

LIMITS = """  limits:
    max_steps: 8
    max_tool_calls: 6
    max_total_tokens: 16000
    max_cost_usd: 0.25
"""
LOOPING_LIMITS = """  limits:
    max_steps: 60
    max_tool_calls: 20
    max_total_tokens: 400000
    max_cost_usd: 2
"""


# A long system prompt (a reference the model reads at every step, ~3,000 tokens): at gpt-4o's
# prices a step costs about a cent, a request cut at 20 tool calls about 20 cents, so $5 is
# gone in some 25 requests.
CATALOGUE = "".join(
    f"      Reference {n:03d}: orders move from placed to packed, shipped and delivered; "
    "a delivery late by more than five days is escalated to a person.\n"
    for n in range(100)
)


def _looping_bundle(agent: Agent) -> Any:
    source = (DEMO / "support-bot-v1.yaml").read_text()
    for old, new in [
        ("  name: gpt-4o-mini\n", "  name: gpt-4o\n"),
        (
            "Answer questions about orders, deliveries and returns, politely and briefly.\n",
            "Answer questions about orders, deliveries and returns. Search until certain.\n"
            + CATALOGUE,
        ),
        (LIMITS, LOOPING_LIMITS),
    ]:
        assert old in source, old
        source = source.replace(old, new, 1)
    return bundle_version_push(actor=ACTOR, agent=agent, source=source, message="loops").version


def _step_cost_max(bundle: Any) -> Decimal:
    """The most one simulated step of this bundle can cost (the simulator's largest draws)."""
    traits = Traits.of(bundle)
    price_in, price_out = traits.price
    return (price_in * (traits.prompt_tokens + 400) + price_out * 300) / Decimal(1_000_000)


@pytest.mark.slow
def test_looping_search_tool__capped_blocked_alerted_then_resumed_next_hour(
    asgi_server: str, tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's threads write while this one reads: SQLite's in-memory test database
    # (shared cache) refuses that instead of waiting, as the embedded default's file does.
    postgresql_only()
    # The hour window of a zone where now is furthest from both ends (zones start their hours
    # at :00, :30 or :45 UTC, so one always has 7 minutes either side): the test's half
    # minute, and the records it backdates by their simulated latency, never straddle one.
    now = timezone.now()

    def margin(zone: str) -> timedelta:
        start, end = window_bounds("hour", now, zone)
        return min(now - start, end - now)

    tenant.time_zone = max(("UTC", "Asia/Kolkata", "Asia/Kathmandu"), key=margin)
    tenant.save()
    window, window_end = window_bounds("hour", now, tenant.time_zone)
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    production = tenant.environments.get(slug="production")
    version = _looping_bundle(agent)
    deployment_create(actor=ACTOR, agent=agent, environment=production, version=version, reason="v")
    budget = budget_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "support-bot hourly",
            "scope": "agent",
            "agent": agent,
            "window": "hour",
            "limits": {"cost_usd": "5"},
            "action": "block",
            "strict": True,
        },
    )
    _, token = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="sim")
    fleet = Fleet(
        asgi_server,
        token,
        runtimes=3,
        agent="support-bot",
        rps=30,
        seed="loop",
        instance_prefix="loop",
        cache_root=tmp_path,
        backoff=Backoff(0.05, 0.5),
        heartbeat_interval_s=0.5,
        wait_s=2,
    )
    blocked_code = f"budget:{budget.pk}"

    def snapshot_state() -> str:
        [document] = budgets_for_snapshot(
            tenant_id=tenant.pk, environment_id=production.pk, agent_id=None
        )
        return str(document["state"])

    def every_runtime_told() -> bool:
        for member in fleet.members:
            snapshot = member.runtime.snapshot
            if snapshot is None or not any(
                b.id == budget.pk and b.state == "exhausted" for b in snapshot.budgets
            ):
                return False
        return True

    fleet.start()
    try:
        assert eventually(lambda: snapshot_state() == "exhausted", timeout=120), "budget exhausted"
        assert eventually(every_runtime_told, timeout=30), "every runtime told"
        assert eventually(
            lambda: sum(1 for r in list(fleet.records) if r.error_code == blocked_code) >= 6,
            timeout=30,
        ), "requests refused by the budget"

        # Blocked runtimes reserve nothing more; once the records of the steps in flight
        # arrived, nothing is held and the hour's spending is final.
        def counter() -> BudgetUsage:
            return BudgetUsage.objects.get(budget=budget, window_start=window, subject="")

        assert eventually(lambda: counter().reserved_cost_usd == 0, timeout=30), "holds released"
        spent = counter().cost_usd
        in_window = RequestRecord.objects.filter(
            tenant=tenant, started_at__gte=window, started_at__lt=window_end
        )
        # one query: refused requests keep arriving, so two counts could see different records
        outside = RequestRecord.objects.filter(tenant=tenant).exclude(
            started_at__gte=window, started_at__lt=window_end
        )
        assert not outside.exists(), list(outside.values_list("started_at", flat=True))
        stored = sum((r.cost_usd for r in in_window), Decimal(0))

        # --- the window rolls over: an hour later for the server, the beat runs
        blocked_at = len(fleet.records)
        real_now = timezone.now
        monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(hours=1))
        assert budgets_roll() == 1
        assert snapshot_state() == "ok"
        assert eventually(
            lambda: any(
                r.error_code == "cap:max_tool_calls" for r in list(fleet.records)[blocked_at + 6 :]
            ),
            timeout=60,
        ), "traffic served again after the roll"
    finally:
        fleet.stop()
    records = list(fleet.records)

    # every looping request was cut at the cap, none went past it
    capped = [r for r in records if r.error_code == "cap:max_tool_calls"]
    assert len(capped) >= 20
    assert max(r.tool_calls for r in records) <= 20
    assert all(r.outcome == "budget_blocked" for r in capped)
    # refused by the budget: no step taken, nothing spent
    refused = [r for r in records if r.error_code == blocked_code]
    # most at the door (the snapshot says exhausted: nothing spent), some cut mid-request when
    # a step's reservation was refused
    assert sum(1 for r in refused if r.cost_usd == 0) >= 3
    assert all(r.outcome == "budget_blocked" for r in refused)

    # the alerts: 50%, 80%, 100% (or: no room left for a step), once each
    kinds = sorted(Alert.objects.filter(tenant=tenant).values_list("kind", flat=True))
    assert kinds == ["budget.exhausted", "budget.threshold", "budget.threshold"], kinds
    titles = sorted(Alert.objects.filter(kind="budget.threshold").values_list("title", flat=True))
    assert ["50%" in titles[0], "80%" in titles[1]] == [True, True], titles
    assert AuditEvent.objects.filter(action="budget.exhausted").count() == 1
    assert AuditEvent.objects.filter(action="budget.window_reset").count() == 1

    # what the hour cost: the exact sum of its records, over $5 by at most the steps in flight
    assert spent == stored
    overspend = max(Decimal(0), spent - Decimal(5))
    assert overspend <= 3 * _step_cost_max(json.loads(version.canonical)), overspend
