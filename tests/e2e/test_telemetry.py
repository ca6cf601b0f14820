"""The Telemetry page in a real browser: records a runtime sends through the API (JSON records
and OTLP traces from the real OpenTelemetry SDK) show as drawn charts, and the explorer lists
them with their trace link."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from django.contrib.auth.models import User
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from playwright.sync_api import Page, expect

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.core.roles import Role
from apps.tenancy.models import Tenant
from tests.factories import AgentFactory, make_user

from .conftest import log_in

SHOTS = Path(__file__).resolve().parents[2] / "var" / "test" / "screenshots"


def test_telemetry_page__records_from_the_api__drawn_as_charts(
    asgi_server: str, page: Page, tenant: Tenant
) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    tenant.trace_link_template = "https://tempo.example/trace/{trace_id}"
    tenant.save(update_fields=["trace_link_template"])
    viewer: User = make_user(Role.VIEWER, tenant, username="watcher")
    _, raw = runtime_token_create(
        actor=SystemActor("e2e"),
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        name="fleet",
    )
    now = datetime.now(UTC)
    response = requests.post(
        f"{asgi_server}/api/runtime/v1/records",
        headers={"Authorization": f"Bearer {raw}"},
        json={
            "records": [
                {
                    "request_id": uuid.uuid4().hex,
                    "agent": "support-bot",
                    "session_id": f"s-{i % 3}",
                    "version_digest": "a" * 64 if i % 4 else "c" * 64,
                    "variant": "stable" if i % 4 else "candidate",
                    "started_at": (now - timedelta(minutes=i)).isoformat(),
                    "latency_ms": 100 + 10 * i,
                    "tokens_in": 400,
                    "tokens_out": 60,
                    "cost_usd": "0.01",
                    "outcome": "error" if i % 7 == 0 else "success",
                    "trace_id": f"{i:032x}",
                }
                for i in range(1, 30)
            ]
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(
                endpoint=f"{asgi_server}/api/runtime/v1/otlp/v1/traces",
                headers={"Authorization": f"Bearer {raw}"},
            )
        )
    )
    with provider.get_tracer("runtime").start_as_current_span(
        "invoke_agent support-bot",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support-bot"},
    ):
        pass
    provider.shutdown()

    log_in(page, asgi_server, viewer.username)
    page.goto(f"{asgi_server}/agents/{agent.pk}/")
    page.get_by_role("link", name="telemetry", exact=True).first.click()
    page.get_by_role("link", name="last 1h").click()

    expect(page.get_by_role("heading", name="Telemetry")).to_be_visible()
    charts = page.locator("[data-plotly-figure] .main-svg")
    expect(charts.first).to_be_visible()
    expect(page.locator("[data-plotly-figure]")).to_have_count(5)
    expect(page.get_by_text("How much traffic?").first).to_be_visible()
    expect(page.get_by_role("cell", name="candidate")).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "telemetry.png"), full_page=True)

    page.get_by_role("link", name="Records", exact=True).click()
    # 29 JSON records and the OTLP one (newest first), each with its trace link
    expect(page.locator("tbody tr")).to_have_count(30)
    expect(page.get_by_role("link", name="trace")).to_have_count(30)
    expect(
        page.locator('a[href="https://tempo.example/trace/00000000000000000000000000000001"]')
    ).to_be_visible()
    page.screenshot(path=str(SHOTS / "records.png"), full_page=True)


def test_telemetry_page__the_simulated_fleet_reports__its_version_charted(
    asgi_server: str, page: Page, tenant: Tenant
) -> None:
    # The reference runtime reports through dataplane.usage by default: a simulated fleet
    # serving a deployed version shows up on the page under that version's digest.
    import subprocess
    import sys

    from apps.bundles.services import bundle_version_push
    from apps.rollouts.services import deployment_create

    demo = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    production = tenant.environments.get(slug="production")
    version = bundle_version_push(
        actor=SystemActor("e2e"),
        agent=agent,
        message="v1",
        source=(demo / "support-bot-v1.yaml").read_text(),
    ).version
    deployment_create(
        actor=SystemActor("e2e"), agent=agent, environment=production, version=version, reason="s"
    )
    viewer: User = make_user(Role.VIEWER, tenant, username="watcher")
    _, raw = runtime_token_create(
        actor=SystemActor("e2e"), tenant=tenant, environment=production, name="fleet"
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "dataplane.simulate",
            "--url",
            asgi_server,
            "--token",
            raw,
            "--runtimes",
            "2",
            "--duration",
            "6",
            "--rps",
            "20",
            "--seed",
            "7",
        ],
        check=True,
        timeout=60,
        capture_output=True,
    )

    log_in(page, asgi_server, viewer.username)
    page.goto(f"{asgi_server}/agents/{agent.pk}/telemetry/?environment=production&range=1h")
    expect(page.locator("[data-plotly-figure] .main-svg").first).to_be_visible()
    expect(page.get_by_role("cell", name=version.digest[:12])).to_be_visible()
