"""Every page works under the Content-Security-Policy in a real headless Chromium: an Admin
crawls the UI from the overview (every distinct page reachable by a link, the demo data
loaded, a flag with a usage chart) plus the API docs, and no page reports a CSP violation,
a console error or an uncaught script error. The behaviours moved out of inline script still
work: the tenant switcher submits on change, Cancel goes back, charts draw."""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import urljoin, urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Page, expect

from apps.flags.models import Flag, FlagUsage
from apps.tenancy.models import Tenant

from ..factories import TenantFactory
from .conftest import log_in

# Recorded before any page script runs (a DevTools-injected script, which the CSP does not
# govern), so a violation during parsing is caught too.
# One violation is the policy doing its job: ReDoc's bundle always renders its vendor's logo
# from a CDN (and hides it when it fails to load); nothing here loads from a CDN.
KNOWN_BLOCKED = ["https://cdn.redoc.ly/redoc/logo-mini.svg"]
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  if (KNOWN_BLOCKED.includes(e.blockedURI)) return;
  window.__cspViolations.push(
    `${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`
  );
});
""".replace("KNOWN_BLOCKED", repr(KNOWN_BLOCKED))
# Links a crawl must not follow: leaving the session, the Django admin (not the product UI),
# machine-readable documents.
SKIP = re.compile(r"^/(logout/|django-admin/|api/(schema|v1|runtime|client)/|static/)")
DOWNLOAD = re.compile(r"\.[a-z]+$")  # bundle.yaml, exports: files, not pages
MAX_PAGES = 120


class Problems:
    """Console errors and uncaught exceptions of one browser page, by URL."""

    def __init__(self, page: Page) -> None:
        self.items: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.items.append(f"{page.url}: uncaught {error}"))
        self.page = page

    def _console(self, message: ConsoleMessage) -> None:
        if message.location.get("url", "").endswith("/favicon.ico"):
            return  # the browser asks for one on its own; the product ships none
        if any(url in message.text for url in KNOWN_BLOCKED):
            return
        if message.type == "error" or "Content Security Policy" in message.text:
            self.items.append(f"{self.page.url}: console {message.type}: {message.text}")

    def check(self, url: str) -> list[str]:
        violations = self.page.evaluate("window.__cspViolations || []")
        return [f"{url}: CSP {v}" for v in violations] + self.items


def _pattern(path: str) -> str:
    """/flags/12/edit/ and /flags/13/edit/ are one page to check."""
    return re.sub(r"/\d+(?=/|$)", "/N", path)


@pytest.fixture
def demo(admin: User) -> Tenant:
    call_command("seed_demo", verbosity=0)
    tenant = Tenant.objects.get(slug="acme")
    TenantFactory(slug="globex", name="Globex")
    flag = Flag.objects.filter(environment__tenant=tenant).order_by("id").first()
    assert flag is not None
    FlagUsage.objects.create(
        environment=flag.environment,
        flag_name=flag.name,
        app_name="web",
        hour=timezone.now().replace(minute=0, second=0, microsecond=0),
        yes=7,
        no=3,
    )
    return tenant


def _visit(page: Page, url: str) -> None:
    response = page.goto(url, wait_until="load")
    assert response is not None and response.status < 400, f"{url} answered {response}"
    page.wait_for_timeout(150)  # htmx's first swaps and deferred scripts


def test_every_page__admin_in_chromium__no_csp_violation_nor_script_error(
    asgi_server: str, page: Page, admin: User, demo: Tenant
) -> None:
    page.add_init_script(RECORD_VIOLATIONS)
    problems = Problems(page)
    log_in(page, asgi_server, admin.username)

    seen: set[str] = set()
    queue: deque[str] = deque(["/", "/api/docs/", "/api/redoc/"])
    visited: list[str] = []
    while queue and len(visited) < MAX_PAGES:
        path = queue.popleft()
        if _pattern(urlsplit(path).path) in seen:
            continue
        seen.add(_pattern(urlsplit(path).path))
        _visit(page, asgi_server + path)
        visited.append(path)
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
        for href in hrefs:
            parts = urlsplit(urljoin(page.url, href))
            if (
                parts.netloc != urlsplit(asgi_server).netloc
                or SKIP.match(parts.path)
                or DOWNLOAD.search(parts.path)
            ):
                continue
            queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
        assert problems.check(path) == [], problems.check(path)

    # the crawl reached the product, not only the overview
    assert len(visited) > 30, visited
    for expected in ("/agents/", "/flags/N/", "/audit/N/", "/runtimes/", "/api/docs/"):
        assert expected in seen, f"the crawl never reached {expected}: {sorted(seen)}"


def test_moved_behaviours__work_under_the_policy(
    asgi_server: str, page: Page, admin: User, demo: Tenant
) -> None:
    page.add_init_script(RECORD_VIOLATIONS)
    problems = Problems(page)
    log_in(page, asgi_server, admin.username)

    # the tenant switcher switches on its button (was an inline onchange; choosing alone must
    # not change the context, WCAG 3.2.2)
    page.get_by_label("Tenant").select_option("globex")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_label("Tenant")).to_have_value("globex")
    page.get_by_label("Tenant").select_option("acme")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_label("Tenant")).to_have_value("acme")

    # the usage chart draws from its data attribute (was an inline script)
    usage = FlagUsage.objects.get()
    flag = Flag.objects.get(name=usage.flag_name, environment=usage.environment)
    _visit(page, f"{asgi_server}/flags/{flag.pk}/")
    expect(page.locator("[data-plotly-figure] .main-svg").first).to_be_visible()

    # Cancel on a confirmation goes back (was a javascript: URL)
    page.goto(f"{asgi_server}/flags/{flag.pk}/delete/")
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(f"{asgi_server}/flags/{flag.pk}/")

    # the API docs start without inline script
    _visit(page, f"{asgi_server}/api/docs/")
    expect(page.locator(".swagger-ui .info .title").first).to_be_visible(timeout=60_000)
    _visit(page, f"{asgi_server}/api/redoc/")
    # (the schema takes seconds to generate on a small machine)
    expect(page.locator("redoc h1").first).to_be_visible(timeout=60_000)

    assert problems.check("moved behaviours") == []
