"""axe-core (the npm package, injected by Playwright into Debian's headless Chromium) finds no
serious or critical WCAG 2.0/2.1 A and AA violation on any page, nor in the states that showed
problems: an engaged kill switch with its live propagation, a flash message after an action, and
forms shown again with their errors (issue "Usable on a phone and by keyboard", part B).

The page list is a crawl, like tests/e2e/test_csp.py's: an Admin on the demo data (seed_demo)
follows every link and every button-only GET form (the buttons that open a confirmation) from the
overview, one page per URL pattern, so a new page is checked without a line here. Every page is
also checked for ARIA references to ids that do not exist (a field's aria-describedby naming
help text or errors the page does not carry: axe only flags those when no id resolves).

The API docs (Swagger UI, ReDoc: third-party bundles) are left to their own test."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import pytest
from django.contrib.auth.models import User
from django.db.models import Count
from django.urls import reverse
from playwright.sync_api import Browser, Page, expect

from apps.audit.services import SystemActor
from apps.rollouts.services import deployment_create, rollout_start
from apps.tenancy.models import Tenant

from .conftest import log_in
from .test_csp import DOWNLOAD, SKIP, _pattern, demo  # noqa: F401  (demo: a fixture)

AXE = Path(__file__).parents[1] / "crosslang" / "node_modules" / "axe-core" / "axe.min.js"
pytestmark = pytest.mark.skipif(
    not AXE.exists(),
    reason="axe-core is not installed: npm ci --prefix tests/crosslang "
    "(the accessibility checks run the real axe-core, never a stand-in)",
)
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
MAX_PAGES = 150
ACTOR = SystemActor("test")
NOT_HERE = re.compile(r"^/api/(docs|redoc)/")

# axe's verdicts of weight, and ARIA id references that resolve to nothing.
AUDIT = """
async (tags) => {
  const result = await axe.run(document, { runOnly: { type: "tag", values: tags } });
  const problems = result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id} (${v.help}): ` + v.nodes.slice(0, 4)
      .map((n) => n.target.join(" ")).join(" | "));
  for (const el of document.querySelectorAll("[aria-describedby], [aria-labelledby]")) {
    for (const name of ["aria-describedby", "aria-labelledby"]) {
      for (const id of (el.getAttribute(name) || "").split(/\\s+/).filter(Boolean)) {
        if (!document.getElementById(id)) {
          problems.push(`dangling ${name}="${id}" on ${el.tagName.toLowerCase()}#${el.id}`);
        }
      }
    }
  }
  return problems;
}
"""
# Button-only GET forms (a confirmation page behind a real button), as URLs to visit.
GET_FORMS = """
() => Array.from(document.querySelectorAll("form[action]"))
  .filter((f) => (f.method || "get").toLowerCase() === "get")
  .filter((f) => Array.from(f.elements).every((e) => e.type === "hidden" || e.tagName === "BUTTON"))
  .map((f) => f.action + "?" + new URLSearchParams(new FormData(f)).toString())
"""


@pytest.fixture
def axe_page(browser: Browser) -> Iterator[Page]:
    """One page for the whole walk. The CSP (scripts from /static/ only) is bypassed so axe can
    be injected; live updates are paused (the product's own control) so no poll swaps a part
    while axe reads it: every part still loads once."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.add_init_script('window.localStorage.setItem("live-updates-paused", "1");')
    page = context.new_page()
    page.set_default_timeout(20_000)
    _count_requests(page)
    yield page
    context.close()


# the requests each audited page has in flight (``_count_requests``)
_IN_FLIGHT: dict[int, int] = {}


def _count_requests(page: Page) -> None:
    key = id(page)
    _IN_FLIGHT[key] = 0

    def started(_: Any) -> None:
        _IN_FLIGHT[key] += 1

    def ended(_: Any) -> None:
        _IN_FLIGHT[key] -= 1

    page.on("request", started)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)


def _network_quiet(page: Page, quiet_ms: int = 100, timeout_ms: int = 20_000) -> None:
    """Wait until no request of ``page`` has been in flight for ``quiet_ms``: Playwright's
    "networkidle" with a 100 ms window instead of its fixed 500 ms. Enough here: every part
    a page loads by itself is requested on load (``hx-trigger="load"``, no delays) and the
    live polls are paused, so after the load event nothing starts later than the responses
    it waits for; the walk audits ~100 pages, and 400 ms each was most of its time."""
    quiet = waited = 0
    while quiet < quiet_ms:
        page.wait_for_timeout(20)  # lets Playwright deliver the request events
        waited += 20
        quiet = quiet + 20 if _IN_FLIGHT[id(page)] <= 0 else 0
        assert waited < timeout_ms, "the page never stopped loading"


def _audit(page: Page, label: str) -> list[str]:
    _network_quiet(page)
    page.add_script_tag(path=str(AXE))
    problems: list[str] = page.evaluate(AUDIT, TAGS)
    return [f"{label}: {p}" for p in problems]


def _visit(page: Page, url: str) -> None:
    response = page.goto(url, wait_until="load")
    assert response is not None and response.status < 400, f"{url} answered {response}"


def _local(base_url: str, url: str) -> str | None:
    parts = urlsplit(urljoin(base_url, url))
    if parts.netloc != urlsplit(base_url).netloc or SKIP.search(parts.path):
        return None
    if NOT_HERE.search(parts.path) or DOWNLOAD.search(parts.path):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_every_page__axe__no_serious_or_critical_violation(
    asgi_server: str,
    axe_page: Page,
    admin: User,
    demo: Tenant,  # noqa: F811  (the fixture imported above)
) -> None:
    page = axe_page
    log_in(page, asgi_server, admin.username)
    problems: list[str] = []
    seen: set[str] = set()
    # the production flags first: only there is a flag's toggle a confirmation (a GET form
    # behind a button) rather than a direct POST, and the walk visits each path once
    production = demo.environments.get(slug="production")
    queue: deque[str] = deque(["/", f"/flags/?environment={production.pk}"])
    visited: list[str] = []
    while queue and len(visited) < MAX_PAGES:
        path = queue.popleft()
        if _pattern(urlsplit(path).path) in seen:
            continue
        seen.add(_pattern(urlsplit(path).path))
        _visit(page, asgi_server + path)
        visited.append(path)
        problems += _audit(page, path)
        links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        for url in links + page.evaluate(GET_FORMS):
            local = _local(asgi_server, url)
            if local and _pattern(urlsplit(local).path) not in seen:
                queue.append(local)

    assert not problems, "\n".join(problems)
    # the walk reached the product, confirmations behind buttons included
    assert len(visited) > 40, visited
    for expected in ("/agents/N/", "/flags/N/toggle/", "/budgets/N/delete/", "/runtimes/"):
        assert expected in seen, f"the walk never reached {expected}: {sorted(seen)}"


def _submit_empty(page: Page, base_url: str, url: str, button: str) -> None:
    _visit(page, base_url + url)
    page.get_by_role("button", name=button, exact=True).click()
    expect(page.locator("[aria-invalid=true]").first).to_be_attached()


def test_states__kill_switch_engaged_flash_and_forms_with_errors__axe_finds_nothing_serious(
    asgi_server: str,
    axe_page: Page,
    admin: User,
    demo: Tenant,  # noqa: F811  (the fixture imported above)
) -> None:
    page = axe_page
    log_in(page, asgi_server, admin.username)
    agent = demo.agents.order_by("pk").first()
    assert agent is not None
    problems: list[str] = []

    # a confirmation shown again without its reason; the focus is on the reason
    engage = reverse("flags:kill_switch_engage")
    query: dict[str, Any] = {"kind": "agent_stopped", "scope": "agent", "agent": agent.pk}
    _submit_empty(page, asgi_server, f"{engage}?{urlencode(query)}", "Engage kill switch")
    expect(page.get_by_label("Reason")).to_be_focused()
    problems += _audit(page, "kill switch confirmation with errors")

    # engaged: the flash message and the switch with its live propagation
    page.get_by_label("Reason").fill("answers in Klingon")
    page.get_by_role("button", name="Engage kill switch").click()
    expect(page.locator(".kill-engaged")).to_have_count(1)
    expect(page.get_by_role("status").first).to_be_visible()
    problems += _audit(page, "kill switch engaged, with a flash message")

    # a rollout running, its page refreshing itself (demo data has none running)
    shipped = demo.agents.annotate(n=Count("bundle_versions")).filter(n__gte=2).first()
    assert shipped is not None
    versions = list(shipped.bundle_versions.order_by("number")[:2])
    development = demo.environments.get(slug="development")
    deployment_create(
        actor=ACTOR, agent=shipped, environment=development, version=versions[0], reason="go"
    )
    rollout = rollout_start(
        actor=ACTOR, agent=shipped, environment=development, candidate=versions[1], reason="try"
    )
    _visit(page, asgi_server + reverse("rollouts:rollout_detail", args=[rollout.pk]))
    problems += _audit(page, "a running rollout")

    # other forms shown again with errors
    for url, button in [
        (reverse("tenancy:agent_create"), "Save"),
        (reverse("budgets:create"), "Save"),
        (reverse("alerts:channel_create"), "Save"),
        (reverse("accounts:user_create"), "Save"),
        (reverse("approvals:queue_create"), "Save"),
    ]:
        _submit_empty(page, asgi_server, url, button)
        problems += _audit(page, f"{url} with errors")
    assert not problems, "\n".join(problems)


def test_failed_submit__focus_on_the_first_invalid_field_which_names_its_errors(
    asgi_server: str,
    axe_page: Page,
    admin: User,
    demo: Tenant,  # noqa: F811  (the fixture imported above)
) -> None:
    page = axe_page
    log_in(page, asgi_server, admin.username)
    _submit_empty(page, asgi_server, reverse("budgets:create"), "Save")

    focused = page.evaluate(
        """() => { const f = document.activeElement; return {
             invalid: f.getAttribute("aria-invalid"),
             first: f === document.querySelector("[aria-invalid=true]"),
             described: (f.getAttribute("aria-describedby") || "").split(/\\s+/)
               .map((id) => document.getElementById(id)?.textContent.trim()
                            || `missing ${id}`) }; }"""
    )
    assert focused["invalid"] == "true" and focused["first"], json.dumps(focused)
    assert focused["described"] and not any(d.startswith("missing") for d in focused["described"])
    assert any("required" in d.lower() for d in focused["described"]), focused["described"]
