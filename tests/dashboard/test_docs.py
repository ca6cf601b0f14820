"""The product serves its own documentation at ``/docs/<name>/``: every page that points at
a document links to a page that answers (no "see docs/x.md" left as text), links between
documents stay inside the product, raw HTML in a document is escaped, and a name that is no
document is a 404."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from apps.core.roles import Role
from apps.dashboard.docs import documents
from apps.tenancy.models import Tenant

from ..factories import AgentFactory, make_user

ROOT = Path(__file__).resolve().parents[2]


def test_templates__no_document_named_as_text() -> None:
    """A page that mentions docs/<name>.md names it as text that nobody can follow."""
    offenders = [
        f"{path.relative_to(ROOT)}: {match}"
        for path in (ROOT / "templates").rglob("*.html")
        for match in re.findall(r"docs/[a-z0-9-]+\.md", path.read_text())
    ]
    assert offenders == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "heading"),
    [
        ("bundle-format", "<h1>"),
        ("releases", "<h1>Releases: deploy and roll back</h1>"),
        ("ci", "<h1>"),
        ("runtime-api", "<h1>"),
    ],
)
def test_doc_page__each_linked_document__rendered(tenant: Tenant, name: str, heading: str) -> None:
    client = Client()
    client.force_login(make_user(Role.VIEWER, tenant))
    response = client.get(f"/docs/{name}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert heading in html
    assert "<table>" in html or name != "releases"  # tables render
    # a link to another document stays in the product
    assert 'href="/docs/' in html or name == "ci"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    ["nope", "DESIGN", "bundle.schema", "..%2Fpyproject", "a" * 90, "../README", "decisions/x"],
)
def test_doc_page__no_such_document__404(tenant: Tenant, name: str) -> None:
    client = Client()
    client.force_login(make_user(Role.VIEWER, tenant))
    assert client.get(f"/docs/{name}/").status_code == 404


@pytest.mark.django_db
def test_doc_page__raw_html_escaped(tenant: Tenant, tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "evil.md").write_text("# Evil\n\n<script>alert(1)</script>\n\n[ok](other.md)\n")
    (tmp_path / "other.md").write_text("# Other\n")
    settings.DOCS_DIR = tmp_path
    assert set(documents()) == {"evil", "other"}
    client = Client()
    client.force_login(make_user(Role.VIEWER, tenant))
    html = client.get("/docs/evil/").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert 'href="/docs/other/"' in html


@pytest.mark.django_db
def test_bundle_pages__link_the_format_guide_and_it_answers(tenant: Tenant) -> None:
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    client = Client()
    client.force_login(make_user(Role.OPERATOR, tenant))
    for url in (f"/bundles/agents/{agent.pk}/", f"/bundles/agents/{agent.pk}/new/"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert 'href="/docs/bundle-format/"' in page.content.decode(), url
    assert client.get("/docs/bundle-format/").status_code == 200


@pytest.mark.django_db
def test_doc_page__links_resolve_inside_the_product(tenant: Tenant) -> None:
    """Every link and image of every document answers (or is left as text): no dead link."""
    client = Client()
    client.force_login(make_user(Role.VIEWER, tenant))
    for name in documents():
        html = client.get(f"/docs/{name}/").content.decode()
        for target in re.findall(r'(?:href|src)="(/[^"#]*)', html):
            if target.startswith("/docs/") or target.startswith("/api/v1/schemas/"):
                assert client.get(target).status_code == 200, (name, target)
    budgets = client.get("/docs/budgets/").content.decode()
    assert 'href="/docs/decisions/0025-budget-reservations/"' in budgets
    rollout_pages = client.get("/docs/rollout-pages/").content.decode()
    assert 'src="/docs/screenshots/rollout.png"' in rollout_pages
    assert client.get("/docs/screenshots/rollout.png")["Content-Type"] == "image/png"
    assert client.get("/docs/screenshots/nope.png").status_code == 404
