"""The operator's telemetry pages: the Telemetry page (charts from rollups, with data and
without), the records explorer (filters, keyset pages, cost outliers, trace links escaped),
the record page and "Export as evaluation case" (YAML that parses back)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client, override_settings
from ruamel.yaml import YAML

from apps.accounts.models import RuntimeToken
from apps.core.roles import Role
from apps.telemetry import explorer
from apps.telemetry.models import RequestRecord
from apps.telemetry.services import records_ingest
from apps.tenancy.models import Agent, Tenant
from tests.factories import make_user

from .conftest import now_utc, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(viewer) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(viewer)
    return client


def _ingest(token: RuntimeToken, *records: dict[str, Any]) -> None:
    result = records_ingest(token=token, records=list(records))
    assert not result.rejected, result.rejected


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


# --------------------------------------------------------------------------- Telemetry page


def test_telemetry_page__no_records__empty_state(browser: Client, agent: Agent) -> None:
    page = _page(browser, f"/agents/{agent.pk}/telemetry/")

    assert "No requests from support-bot in Production in the last 24h" in page
    assert "plotly-graph-div" not in page


def test_telemetry_page__records__charts_per_version_and_variant(
    browser: Client, agent: Agent, token: RuntimeToken
) -> None:
    _ingest(
        token,
        record(version_digest="a" * 64, variant="stable", latency_ms=100),
        record(version_digest="a" * 64, variant="stable", outcome="error", latency_ms=900),
        record(version_digest="c" * 64, variant="candidate", latency_ms=300),
    )

    page = _page(browser, f"/agents/{agent.pk}/telemetry/?environment=production&range=1h")

    assert page.count('class="plotly-graph-div"') == 5
    for question in ("How much traffic?", "How often does it fail?", "How slow?"):
        assert question in page
    assert "What does a request cost?" in page and "How many tokens?" in page
    assert "aaaaaaaaaaaa stable" in page and "cccccccccccc candidate" in page
    assert "/static/vendor/plotly/plotly.min.js" in page
    assert "50.00%" in page  # stable's error rate in the summary table


def test_telemetry_page__htmx_refresh__only_the_charts(
    browser: Client, agent: Agent, token: RuntimeToken
) -> None:
    _ingest(token, record())

    page = _page_htmx(browser, f"/agents/{agent.pk}/telemetry/?range=6h")

    assert "plotly-graph-div" in page and "<html" not in page


def _page_htmx(client: Client, url: str) -> str:
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


def test_telemetry_page__other_environment__not_mixed(
    browser: Client, agent: Agent, token: RuntimeToken
) -> None:
    _ingest(token, record())

    page = _page(browser, f"/agents/{agent.pk}/telemetry/?environment=staging")

    assert "No requests from support-bot in Staging" in page


def test_telemetry_page__unknown_environment__404(browser: Client, agent: Agent) -> None:
    assert browser.get(f"/agents/{agent.pk}/telemetry/?environment=nope").status_code == 404


def test_telemetry_page__other_tenant__404(agent: Agent, other_tenant: Tenant) -> None:
    client = Client()
    client.force_login(make_user(Role.OPERATOR, other_tenant))

    assert client.get(f"/agents/{agent.pk}/telemetry/").status_code == 404
    assert client.get(f"/agents/{agent.pk}/records/").status_code == 404


def test_agent_page__links_to_telemetry(browser: Client, agent: Agent) -> None:
    page = _page(browser, f"/agents/{agent.pk}/")

    assert f'href="/agents/{agent.pk}/telemetry/"' in page


def test_chart_series__buckets_merge_rollups(agent: Agent, token: RuntimeToken) -> None:
    start = now_utc() - timedelta(minutes=3)
    _ingest(
        token,
        *[
            record(started_at=(start + timedelta(seconds=20 * i)).isoformat(), latency_ms=10 * i)
            for i in range(1, 7)
        ],
    )
    production = agent.tenant.environments.get(slug="production")

    [line] = explorer.chart_series(agent=agent, environment=production, range_label="6h")

    assert line.total.requests == 6 and sum(p.stats.requests for p in line.points) == 6
    assert len(line.points) <= 2  # 5-minute buckets
    # DDSketch's p95 of six values is the one of rank floor(0.95 * 5) = 4: 50 ms, within 1 %
    assert line.total.p95_ms == pytest.approx(50, rel=0.01)


# --------------------------------------------------------------------------- explorer


def test_explorer__no_records__empty_state(browser: Client, agent: Agent) -> None:
    page = _page(browser, f"/agents/{agent.pk}/records/")

    assert "No records from support-bot in Production yet." in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("outcome=error", {"err"}),
        ("variant=candidate", {"cand"}),
        ("version=" + "c" * 64, {"cand"}),
        ("session=s-2", {"cand", "slow"}),
        ("min_cost=0.5", {"pricey"}),
        ("min_latency=5000", {"slow"}),
        ("", {"ok", "err", "cand", "pricey", "slow"}),
        ("range=1h&min_latency=5000&session=s-2", {"slow"}),
    ],
)
def test_explorer__filters(
    browser: Client, agent: Agent, token: RuntimeToken, query: str, expected: set[str]
) -> None:
    _ingest(
        token,
        record(request_id="ok"),
        record(request_id="err", outcome="error", error_code="timeout"),
        record(request_id="cand", variant="candidate", version_digest="c" * 64, session_id="s-2"),
        record(request_id="pricey", cost_usd="0.75"),
        record(request_id="slow", latency_ms=9000, session_id="s-2"),
    )
    ids = {r.request_id: r.pk for r in RequestRecord.objects.all()}

    page = _page(browser, f"/agents/{agent.pk}/records/?{query}")

    shown = {rid for rid, pk in ids.items() if f'href="/telemetry/records/{pk}/"' in page}
    assert shown == expected


def test_explorer__bad_filter__field_error_not_500(browser: Client, agent: Agent) -> None:
    page = _page(browser, f"/agents/{agent.pk}/records/?min_cost=-1&outcome=exploded")

    assert 'role="alert"' in page


def test_explorer__keyset_pages__every_record_once_in_order(
    browser: Client, agent: Agent, token: RuntimeToken
) -> None:
    start = now_utc() - timedelta(minutes=30)
    same_moment = (start + timedelta(minutes=5)).isoformat()
    _ingest(
        token,
        *[
            record(
                request_id=f"r{i:03d}",
                # a run of records at the same instant: the id breaks the tie
                started_at=same_moment
                if 40 <= i < 70
                else (start + timedelta(seconds=i)).isoformat(),
            )
            for i in range(120)
        ],
    )
    production = agent.tenant.environments.get(slug="production")
    queryset = explorer.records_for(
        agent=agent,
        environment=production,
        filters=explorer.RecordFilters(since=start - timedelta(hours=1), until=now_utc()),
    )

    seen: list[int] = []
    after = None
    pages = 0
    while True:
        page = explorer.records_page(queryset, after=after, size=50)
        seen += [r.pk for r in page.records]
        pages += 1
        if page.next_cursor is None:
            break
        after = page.next_cursor

    expected = list(
        RequestRecord.objects.order_by("-started_at", "-id").values_list("pk", flat=True)
    )
    assert seen == expected and len(seen) == 120 and pages == 3


def test_explorer__next_link__continues_with_the_filters(
    browser: Client, agent: Agent, token: RuntimeToken
) -> None:
    _ingest(token, *[record(outcome="error") for _ in range(explorer.PAGE_SIZE + 3)])

    first = _page(browser, f"/agents/{agent.pk}/records/?outcome=error")
    next_href = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
    second = _page(browser, f"/agents/{agent.pk}/records/{next_href.replace('&amp;', '&')}")

    assert "outcome=error" in next_href and "after=" in next_href
    assert second.count('href="/telemetry/records/') == 3
    assert 'rel="next"' not in second


def test_explorer__broken_cursor__error_not_500(browser: Client, agent: Agent) -> None:
    page = _page(browser, f"/agents/{agent.pk}/records/?after=%%%garbage")

    assert "This page link is broken" in page


def test_cursor__round_trip_and_garbage() -> None:
    with pytest.raises(explorer.BadCursor):
        explorer.decode_cursor("bm90LWEtY3Vyc29y")


# --------------------------------------------------------------------------- cost outliers


@override_settings(TELEMETRY_COST_OUTLIER_MULTIPLE=10.0)
def test_cost_outliers__over_ten_times_the_median__flagged_and_listed_with_session(
    browser: Client, agent: Agent, token: RuntimeToken
) -> None:
    _ingest(
        token,
        *[record(request_id=f"n{i}", cost_usd="0.50") for i in range(9)],
        record(request_id="forty-seven", cost_usd="47.00", session_id="loop-session"),
        record(request_id="four", cost_usd="4.00"),  # 8x: expensive, not an outlier
    )
    production = agent.tenant.environments.get(slug="production")
    rule = explorer.cost_outlier_rule(agent=agent, environment=production)

    page = _page(browser, f"/agents/{agent.pk}/records/?outliers=on")

    assert rule.median == Decimal("0.5") and rule.threshold == Decimal("5.0")
    forty_seven = RequestRecord.objects.get(request_id="forty-seven")
    four = RequestRecord.objects.get(request_id="four")
    assert f'href="/telemetry/records/{forty_seven.pk}/"' in page
    assert f'href="/telemetry/records/{four.pk}/"' not in page
    assert "loop-session" in page and "94\u00d7 median" in page
    assert "Cost outliers" in page


def test_cost_outliers__flag_on_the_full_list(
    browser: Client, agent: Agent, token: RuntimeToken
) -> None:
    _ingest(
        token,
        *[record(cost_usd="0.10") for _ in range(5)],
        record(request_id="big", cost_usd="3.00"),
    )

    page = _page(browser, f"/agents/{agent.pk}/records/")

    assert page.count('class="outlier"') == 1 and "30\u00d7 median" in page


def test_cost_outlier_median__once_a_minute_per_agent__not_per_page(
    agent: Agent, token: RuntimeToken
) -> None:
    production = agent.tenant.environments.get(slug="production")
    _ingest(token, *[record(cost_usd="0.50") for _ in range(3)])
    first = explorer.cost_outlier_rule(agent=agent, environment=production)
    _ingest(token, *[record(cost_usd="9.00") for _ in range(9)])

    cached = explorer.cost_outlier_rule(agent=agent, environment=production)
    exact = explorer.cost_outlier_rule(
        agent=agent, environment=production, now=datetime.now(UTC) + timedelta(seconds=1)
    )

    assert first.median == cached.median == Decimal("0.5")
    assert exact.median == Decimal("9.00")


def test_cost_outliers__no_costs__none(browser: Client, agent: Agent, token: RuntimeToken) -> None:
    _ingest(token, record(cost_usd="0"), record(cost_usd="0"))

    page = _page(browser, f"/agents/{agent.pk}/records/?outliers=on")

    assert "No cost outliers" in page


# --------------------------------------------------------------------------- trace links


def test_trace_link__template_applied_and_escaped(
    browser: Client, agent: Agent, token: RuntimeToken, tenant: Tenant
) -> None:
    tenant.trace_link_template = "https://tempo.example/trace/{trace_id}?orgId=1"
    tenant.save(update_fields=["trace_link_template"])
    _ingest(
        token,
        record(request_id="plain", trace_id="4bf92f3577b34da6a3ce929d0e0e4736"),
        record(request_id="hostile", trace_id='x"><script>alert(1)</script>/../admin?a=b&c'),
    )

    page = _page(browser, f"/agents/{agent.pk}/records/")

    assert 'href="https://tempo.example/trace/4bf92f3577b34da6a3ce929d0e0e4736?orgId=1"' in page
    assert "<script>alert(1)" not in page
    assert (
        "https://tempo.example/trace/"
        "x%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E%2F..%2Fadmin%3Fa%3Db%26c?orgId=1"
    ) in page


def test_trace_url__no_template_or_no_trace__none(tenant: Tenant) -> None:
    assert explorer.trace_url(tenant, "abc") is None
    tenant.trace_link_template = "https://jaeger.example/trace/{trace_id}"
    assert explorer.trace_url(tenant, "") is None
    assert explorer.trace_url(tenant, "a/b") == "https://jaeger.example/trace/a%2Fb"


# --------------------------------------------------------------------------- record + export


def _yaml(text: str) -> Any:
    return YAML(typ="safe").load(io.StringIO(text))


def test_record_page__fields_trace_and_export_form(
    browser: Client, agent: Agent, token: RuntimeToken, tenant: Tenant
) -> None:
    tenant.trace_link_template = "https://tempo.example/trace/{trace_id}"
    tenant.save(update_fields=["trace_link_template"])
    _ingest(token, record(request_id="r-1", error_code="timeout", outcome="error"))
    stored = RequestRecord.objects.get()

    page = _page(browser, f"/telemetry/records/{stored.pk}/")

    assert "timeout" in page and "Export as evaluation case" in page
    assert 'href="https://tempo.example/trace/4bf92f3577b34da6a3ce929d0e0e4736"' in page
    assert f'formaction="/agents/{agent.pk}/records/export/"' in page


def test_record_export__yaml_parses_back(
    browser: Client, agent: Agent, token: RuntimeToken
) -> None:
    _ingest(
        token,
        record(request_id="r-9", outcome="error", error_code="tool_loop", cost_usd="47.125"),
    )
    stored = RequestRecord.objects.get()

    response = browser.get(
        f"/telemetry/records/{stored.pk}/export/",
        {"expected": "success", "note": "should stop after 3 searches", "input": "no"},
    )

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    assert 'filename="case-support-bot-r-9.yaml"' in response["Content-Disposition"]
    document = _yaml(response.content.decode())
    [case] = document["cases"]
    assert document["suite"] == "incidents"
    assert case["name"] == "support-bot-r-9"
    assert case["input"] == "no"  # YAML 1.2: stays a string
    assert case["outcome"] == {
        "observed": "error",
        "error_code": "tool_loop",
        "expected": "success",
    }
    assert case["note"] == "should stop after 3 searches"
    assert case["tools"] == []
    assert case["source"]["cost_usd"] == "47.125"
    assert case["source"]["environment"] == "production"
    assert case["source"]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_session_export__every_request_oldest_first(
    browser: Client, agent: Agent, token: RuntimeToken
) -> None:
    start = now_utc() - timedelta(minutes=10)
    _ingest(
        token,
        record(
            request_id="b",
            session_id="conv-7",
            started_at=(start + timedelta(minutes=1)).isoformat(),
        ),
        record(request_id="a", session_id="conv-7", started_at=start.isoformat()),
        record(request_id="other", session_id="conv-8"),
    )

    response = browser.get(
        f"/agents/{agent.pk}/records/export/", {"session": "conv-7", "environment": "production"}
    )

    assert response.status_code == 200
    names = [case["name"] for case in _yaml(response.content.decode())["cases"]]
    assert names == ["support-bot-a", "support-bot-b"]


def test_session_export__unknown_session__404(browser: Client, agent: Agent) -> None:
    response = browser.get(f"/agents/{agent.pk}/records/export/", {"session": "nope"})

    assert response.status_code == 404


def test_record__other_tenant__404(agent: Agent, token: RuntimeToken, other_tenant: Tenant) -> None:
    _ingest(token, record())
    stored = RequestRecord.objects.get()
    client = Client()
    client.force_login(make_user(Role.OPERATOR, other_tenant))

    assert client.get(f"/telemetry/records/{stored.pk}/").status_code == 404
    assert client.get(f"/telemetry/records/{stored.pk}/export/").status_code == 404


# --------------------------------------------------------------------------- query budgets


def test_explorer_and_telemetry_page__query_budget_independent_of_rows(
    browser: Client,
    agent: Agent,
    token: RuntimeToken,
    django_assert_max_num_queries: Any,
) -> None:
    _ingest(token, *[record(session_id=f"s-{i}", cost_usd="0.01") for i in range(60)])

    with django_assert_max_num_queries(20):
        _page(browser, f"/agents/{agent.pk}/records/")
    with django_assert_max_num_queries(20):
        _page(browser, f"/agents/{agent.pk}/telemetry/?range=24h")


def test_explorer__times_in_the_tenant_time_zone(
    browser: Client, agent: Agent, token: RuntimeToken, tenant: Tenant
) -> None:
    tenant.time_zone = "Asia/Tokyo"
    tenant.save(update_fields=["time_zone"])
    started = (now_utc() - timedelta(minutes=5)).replace(microsecond=0)
    _ingest(token, record(started_at=started.isoformat()))

    page = _page(browser, f"/agents/{agent.pk}/records/")

    tokyo = started + timedelta(hours=9)
    assert tokyo.strftime("%Y-%m-%d %H:%M:%S") in page and "Started (Asia/Tokyo)" in page
    assert "24 hours" in page
