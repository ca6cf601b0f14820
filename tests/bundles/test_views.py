"""The bundles pages render for the people who use them; the editor shows errors on their
lines and stores nothing until the bundle is valid."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apps.audit.services import SystemActor
from apps.bundles.models import BundleVersion, GateRequirement
from apps.bundles.parsing import to_yaml
from apps.bundles.services import bundle_version_push, evaluation_record, promotion_gate_set
from apps.tenancy.models import Agent, Tenant

from .conftest import demo_content, demo_text, state

pytestmark = pytest.mark.django_db
SYSTEM = SystemActor("system:test")


def _login(client: Client, user) -> Client:  # type: ignore[no-untyped-def]
    client.force_login(user)
    return client


@pytest.fixture
def versions(agent: Agent, tenant: Tenant) -> list[BundleVersion]:
    first = bundle_version_push(
        actor=SYSTEM, agent=agent, source=demo_text("refund-agent-v1"), message="first"
    ).version
    content = demo_content()
    content["policies"]["limits"]["max_steps"] = 3
    second = bundle_version_push(
        actor=SYSTEM, agent=agent, source=to_yaml(content), message="fewer steps"
    ).version
    production = tenant.environments.get(slug="production")
    promotion_gate_set(
        actor=SYSTEM,
        environment=production,
        requirements=[{"suite": "golden", "min_pass_rate": "0.95"}],
    )
    evaluation_record(actor=SYSTEM, version=first, suite="golden", passed=99, failed=1)
    return [first, second]


def test_sidebar_link__goes_to_the_bundles_index(client: Client, viewer) -> None:  # type: ignore[no-untyped-def]
    html = _login(client, viewer).get("/").content.decode()
    assert 'href="/bundles/"' in html


def test_index__lists_agents_with_latest_version(client: Client, viewer, versions) -> None:  # type: ignore[no-untyped-def]
    response = _login(client, viewer).get("/bundles/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Refund agent" in html and ">v2<" in html and versions[1].digest[:12] in html


def test_index__no_agents__empty_state(client: Client, viewer) -> None:  # type: ignore[no-untyped-def]
    html = _login(client, viewer).get("/bundles/").content.decode()
    assert "No agents" in html and 'class="empty"' in html


def test_agent_versions__rows_with_gate_badges(
    client: Client, viewer, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    response = _login(client, viewer).get(f"/bundles/agents/{agent.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "fewer steps" in html and "first" in html
    assert "Production: gate met" in html  # v1 has golden 99%
    assert "Production: waiting for results" in html  # v2 has none yet
    assert "New version" not in html  # a Viewer reads only


def test_agent_versions__no_versions__empty_state_explains_push(
    client: Client, operator, agent: Agent
) -> None:  # type: ignore[no-untyped-def]
    html = _login(client, operator).get(f"/bundles/agents/{agent.pk}/").content.decode()
    assert "has no bundle versions yet" in html and "./manage.py bundle push" in html


def test_version_detail__prompts_tools_rules_and_gates(
    client: Client, viewer, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    response = _login(client, viewer).get(f"/bundles/agents/{agent.pk}/v1/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<mark class="var">{{ request }}</mark>' in html
    assert '<span class="badge bad">critical</span>' in html and "needs approval" in html
    assert "amount &gt; 100 or context.confidence &lt; 0.85" in html
    assert "default: whatever no rule matches is denied" in html
    assert "golden: 99.0% ≥ 95.0%" in html
    assert versions[0].digest in html and versions[0].signing_key_id in html
    assert "New version from this one" not in html


def test_version_detail__other_tenant__404(client: Client, operator, other_tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    foreign = other_tenant.agents.get()
    bundle_version_push(
        actor=SYSTEM, agent=foreign, source=demo_text("refund-agent-v1"), message="theirs"
    )
    client = _login(client, operator)
    for url in (
        f"/bundles/agents/{foreign.pk}/",
        f"/bundles/agents/{foreign.pk}/v1/",
        f"/bundles/agents/{foreign.pk}/v1/bundle.yaml",
        f"/bundles/agents/{foreign.pk}/new/",
        f"/bundles/agents/{foreign.pk}/summary/",
        f"/bundles/gates/{other_tenant.environments.get().pk}/",
    ):
        assert client.get(url).status_code == 404, url


def test_download__yaml_file_that_pushes_cleanly(
    client: Client, viewer, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    response = _login(client, viewer).get(f"/bundles/agents/{agent.pk}/v1/bundle.yaml")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="refund-agent-v1.yaml"'
    text = response.content.decode()
    assert "yaml-language-server: $schema=http://testserver/api/v1/schemas/bundle.json" in text
    again = bundle_version_push(
        actor=SYSTEM, agent=agent, source=text, message="download round trip"
    )
    assert not again.created and again.version.number == 1


def test_editor__prefilled_with_the_version_as_pushed(
    client: Client, operator, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    response = _login(client, operator).get(f"/bundles/agents/{agent.pk}/new/?from=1")
    assert response.status_code == 200
    html = response.content.decode()
    assert "# refund-agent v1" in html  # the comment of the file as pushed survives
    assert 'name="parent" value="1"' in html


def test_editor__no_versions__starts_from_a_valid_starter(
    client: Client, operator, agent: Agent
) -> None:  # type: ignore[no-untyped-def]
    html = _login(client, operator).get(f"/bundles/agents/{agent.pk}/new/").content.decode()
    assert "A starting point" in html


def test_editor__invalid_push__inline_errors_on_lines_and_nothing_stored(
    client: Client, operator, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    source = (
        demo_text("refund-agent-v1")
        .replace("max_steps: 6", "max_steps: 0")
        .replace("risk: read", "risk: spicy")
    )
    bad_lines = [
        i
        for i, line in enumerate(source.splitlines(), 1)
        if "max_steps: 0" in line or "risk: spicy" in line
    ]
    before = state()

    response = _login(client, operator).post(
        f"/bundles/agents/{agent.pk}/new/",
        {"source": source, "message": "try", "parent": "1", "action": "push"},
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "2 errors" in html
    for line in bad_lines:
        assert f'href="#L{line}">line {line}</a>' in html
        # the finding row sits right under its line in the annotated listing
        assert re.search(
            rf'id="L{line}" class="has-error".*?</tr>\s*<tr class="finding error"', html, re.S
        )
    assert "/policies/limits/max_steps" in html and "Must be positive" in html
    assert state() == before


def test_editor__check__valid_shows_digest_and_stores_nothing(
    client: Client, operator, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    before = state()
    response = _login(client, operator).post(
        f"/bundles/agents/{agent.pk}/new/",
        {"source": demo_text("support-bot-v1"), "message": "", "action": "check"},
    )
    html = response.content.decode()
    assert response.status_code == 200 and 'badge ok">valid' in html and "sha256:" in html
    assert state() == before


def test_editor__valid_push__new_version_and_redirect(
    client: Client, operator, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    response = _login(client, operator).post(
        f"/bundles/agents/{agent.pk}/new/",
        {
            "source": demo_text("support-bot-v1"),
            "message": "switch to the support prompt",
            "parent": "1",
            "action": "push",
        },
    )
    assert response.status_code == 302 and response["Location"] == f"/bundles/agents/{agent.pk}/v3/"
    version = BundleVersion.objects.get(agent=agent, number=3)
    assert version.parent.number == 1 and version.author_label == "olivia-operator"


def test_editor__push_without_message__error_on_the_message_field(
    client: Client, operator, agent: Agent
) -> None:  # type: ignore[no-untyped-def]
    response = _login(client, operator).post(
        f"/bundles/agents/{agent.pk}/new/",
        {"source": demo_text("refund-agent-v1"), "message": " ", "action": "push"},
    )
    assert response.status_code == 200
    assert 'id="id_message_error"' in response.content.decode()
    assert BundleVersion.objects.count() == 0


def test_editor__viewer__403(client: Client, viewer, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    client = _login(client, viewer)
    assert client.get(f"/bundles/agents/{agent.pk}/new/").status_code == 403
    response = client.post(
        f"/bundles/agents/{agent.pk}/new/",
        {"source": demo_text("refund-agent-v1"), "message": "x", "action": "push"},
    )
    assert response.status_code == 403
    assert BundleVersion.objects.count() == 0


def test_diff_page__defaults_to_latest_against_its_parent(
    client: Client, viewer, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    html = _login(client, viewer).get(f"/bundles/agents/{agent.pk}/diff/").content.decode()
    assert "v1 → v2" in html and "/max_steps" in html


def test_gates__list_and_edit_by_operator(client: Client, operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    client = _login(client, operator)
    staging = tenant.environments.get(slug="staging")
    assert "no gate: any version may be promoted" in client.get("/bundles/gates/").content.decode()
    page = client.get(f"/bundles/gates/{staging.pk}/")
    assert page.status_code == 200
    response = client.post(
        f"/bundles/gates/{staging.pk}/",
        {
            "req-TOTAL_FORMS": "2",
            "req-INITIAL_FORMS": "0",
            "req-MIN_NUM_FORMS": "0",
            "req-MAX_NUM_FORMS": "50",
            "req-0-suite": "golden",
            "req-0-min_pass_rate": "92.5",
            "req-1-suite": "",
            "req-1-min_pass_rate": "",
            "reason": "",
        },
    )
    assert response.status_code == 302
    assert list(GateRequirement.objects.values_list("suite", "gate__environment__slug")) == [
        ("golden", "staging")
    ]
    assert str(GateRequirement.objects.get().min_pass_rate) == "0.9250"


def test_gates__loosening_without_reason__error_shown_nothing_changed(
    client: Client, admin, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    staging = tenant.environments.get(slug="staging")
    promotion_gate_set(
        actor=SYSTEM,
        environment=staging,
        requirements=[{"suite": "golden", "min_pass_rate": "0.9"}],
    )
    before = state()
    response = _login(client, admin).post(
        f"/bundles/gates/{staging.pk}/",
        {
            "req-TOTAL_FORMS": "1",
            "req-INITIAL_FORMS": "1",
            "req-MIN_NUM_FORMS": "0",
            "req-MAX_NUM_FORMS": "50",
            "req-0-suite": "golden",
            "req-0-min_pass_rate": "50",
            "reason": "",
        },
    )
    assert response.status_code == 200 and "loosens the gate" in response.content.decode()
    assert state() == before


def test_gates__operator_loosening__refused_in_words_nothing_changed(
    client: Client, operator, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    staging = tenant.environments.get(slug="staging")
    promotion_gate_set(
        actor=SYSTEM,
        environment=staging,
        requirements=[{"suite": "golden", "min_pass_rate": "0.9"}],
    )
    before = state()
    response = _login(client, operator).post(
        f"/bundles/gates/{staging.pk}/",
        {
            "req-TOTAL_FORMS": "1",
            "req-INITIAL_FORMS": "1",
            "req-MIN_NUM_FORMS": "0",
            "req-MAX_NUM_FORMS": "50",
            "req-0-suite": "golden",
            "req-0-min_pass_rate": "50",
            "reason": "just this once",
        },
    )
    assert response.status_code == 403
    assert "may not loosen the promotion gate of Staging" in response.content.decode()
    assert state() == before


@pytest.mark.parametrize("count", ["-1", "-100"])
def test_gates__negative_row_count__refused_in_words_nothing_changed(
    client: Client, admin, tenant: Tenant, count: str
) -> None:  # type: ignore[no-untyped-def]
    """Django reads a negative row count as "no rows": the gate would be emptied."""
    staging = tenant.environments.get(slug="staging")
    promotion_gate_set(
        actor=SYSTEM,
        environment=staging,
        requirements=[{"suite": "golden", "min_pass_rate": "0.9"}],
    )
    before = state()
    response = _login(client, admin).post(
        f"/bundles/gates/{staging.pk}/",
        {
            "req-TOTAL_FORMS": count,
            "req-INITIAL_FORMS": "1",
            "req-0-suite": "golden",
            "req-0-min_pass_rate": "90",
            "reason": "tampered",
        },
    )
    assert response.status_code == 200
    assert "were not sent whole: reload the page and retry" in response.content.decode()
    assert state() == before


def test_gates__viewer_cannot_edit(client: Client, viewer, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    client = _login(client, viewer)
    assert "Edit</a>" not in client.get("/bundles/gates/").content.decode()
    assert client.get(f"/bundles/gates/{tenant.environments.first().pk}/").status_code == 403


def test_agent_page__links_to_bundles_and_loads_the_summary(
    client: Client, viewer, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    client = _login(client, viewer)
    html = client.get(f"/agents/{agent.pk}/").content.decode()
    assert (
        f"/bundles/agents/{agent.pk}/summary/" in html
        and f'href="/bundles/agents/{agent.pk}/"' in html
    )
    fragment = client.get(f"/bundles/agents/{agent.pk}/summary/").content.decode()
    assert "v2" in fragment and "All 2 versions" in fragment


def test_version_pages__query_count_is_bounded(
    client: Client,
    viewer,
    agent: Agent,
    versions,  # type: ignore[no-untyped-def]
    django_assert_max_num_queries,
) -> None:
    client = _login(client, viewer)
    with django_assert_max_num_queries(20):
        assert client.get(f"/bundles/agents/{agent.pk}/").status_code == 200
    with django_assert_max_num_queries(20):
        assert client.get(f"/bundles/agents/{agent.pk}/v1/").status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "from_version=99&to_version=2",
        "from_version=1&to_version=99",
        "from_version=abc&to_version=2",
        "from_version=1&to_version=-2",
        "to_version=" + "9" * 30,
        "from_version=%EF%BC%91",  # a full-width digit one is no version
    ],
)
def test_diff_page__a_version_that_does_not_exist__404_never_another_pair(
    client: Client, viewer, agent: Agent, versions, query: str
) -> None:  # type: ignore[no-untyped-def]
    response = _login(client, viewer).get(f"/bundles/agents/{agent.pk}/diff/?{query}")
    assert response.status_code == 404


def test_diff_page__named_pair__shown(client: Client, viewer, agent: Agent, versions) -> None:  # type: ignore[no-untyped-def]
    client = _login(client, viewer)
    html = client.get(f"/bundles/agents/{agent.pk}/diff/?from_version=2&to_version=1")
    assert "v2 → v1" in html.content.decode()
    only_new = client.get(f"/bundles/agents/{agent.pk}/diff/?to_version=2").content.decode()
    assert "v1 → v2" in only_new


@pytest.mark.parametrize("base", ["99", "abc", "-1", "1.0"])
def test_editor__from_a_version_that_does_not_exist__404(
    client: Client, operator, agent: Agent, versions, base: str
) -> None:  # type: ignore[no-untyped-def]
    response = _login(client, operator).get(f"/bundles/agents/{agent.pk}/new/?from={base}")
    assert response.status_code == 404


def test_version_page__evaluations_as_percentages_like_the_gate(
    client: Client, viewer, agent: Agent, versions
) -> None:  # type: ignore[no-untyped-def]
    evaluation_record(
        actor=SYSTEM, version=versions[1], suite="golden", passed=8, failed=2, score=0.8
    )
    evaluation_record(
        actor=SYSTEM, version=versions[1], suite="judge", passed=3, failed=0, score=4.5
    )
    html = _login(client, viewer).get(f"/bundles/agents/{agent.pk}/v2/").content.decode()
    cells = re.findall(r"<td>([^<]*)</td>", html)
    assert "80.0%" in cells  # pass rate 8 of 10, and the score 0.8, as the gate says them
    assert cells.count("80.0%") == 2 and "0.8" not in cells
    assert "100.0%" in cells and "4.5" in cells  # a score on another scale stays as it is
    assert "golden: 80.0% &lt; 95.0% required" in html or "80.0% < 95.0%" in html


def test_gate_list__minimums_as_percentages(client: Client, viewer, versions) -> None:  # type: ignore[no-untyped-def]
    html = _login(client, viewer).get("/bundles/gates/").content.decode()
    assert "≥ 95.0%" in html and "0.95" not in html
