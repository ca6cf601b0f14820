"""Every page fits a phone (issue "Usable on a phone and by keyboard", item 1; WCAG 1.4.10
Reflow) in a real headless Chromium: an Admin opens every UI page at 390 and at 320 CSS px,
on a tenant with the demo data and one object of every kind, and

* the page does not scroll sideways, and no element sticks out on the right, except inside a
  data table's scrollable region (or inside a chart, whose own box must fit);
* every table sits in a labelled, focusable region (``.table-scroll``, role="region");
* the sidebar is folded behind a Menu button (aria-expanded, aria-controls) that opens it;
* every button a page offers is at least 44 px tall.

The pages are generated from the URL configuration and the authorisation matrix's ``ROUTES``
with its ``world`` (one object of every kind), like tests/project/test_role_walk.py: a new
page is walked without a line here. The skip link and the focus order are checked at 390 px
too. The login page is checked signed out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse
from guardian.shortcuts import assign_perm
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError

from apps.core.roles import TENANT_ACCESS_PERMISSION
from apps.tenancy.models import Tenant

from ..factories import EnvironmentFactory, TenantFactory
from ..project.test_authorization_matrix import (  # noqa: F401  (world: a fixture)
    PUBLIC,
    ROUTES,
    URLS,
    world,
)
from ..project.test_role_walk import HEADERS, QUERY
from .conftest import log_in
from .test_csp import DOWNLOAD

WIDTHS = (390, 320)
SHOTS = Path(__file__).resolve().parents[2] / "var" / "test" / "screenshots"
# Not the product's pages: the API's own documentation (Swagger UI, ReDoc: third-party
# layouts), the Django admin, downloads and machine-readable answers (checked by type below).
NOT_PAGES = {"api-docs", "api-redoc", "api-schema", "logout"}

# Everything wider than the screen that is not inside a table's scrollable region (the region
# itself must fit) or a chart (its box must fit; its SVG clips a title longer than the screen,
# and a chart is two-dimensional content, which 1.4.10 exempts).
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > width) {
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} > ${width}`);
  }
  const contained = (element) => {
    for (let e = element.parentElement; e && e !== document.body; e = e.parentElement) {
      if (e.classList.contains("table-scroll")) return true;
      if (e.classList.contains("js-plotly-plot")) return true;  // a chart: its box is checked
    }
    return false;
  };
  for (const element of document.querySelectorAll("body *")) {
    const box = element.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || box.right <= width + 0.5) continue;
    if (contained(element)) continue;
    const name = element.tagName.toLowerCase() + (element.id ? "#" + element.id : "");
    const text = (element.textContent || "").trim().slice(0, 60);
    problems.push(`${name} ends at ${Math.round(box.right)} px: ${text}`);
  }
  return problems.slice(0, 8);
}"""

# Tables outside a labelled, focusable region.
BARE_TABLES = """() => [...document.querySelectorAll("table")]
  .filter((t) => {
    const region = t.closest(".table-scroll");
    return !region || region.getAttribute("role") !== "region" || region.tabIndex !== 0
      || !(region.getAttribute("aria-label") || "").trim();
  })
  .map((t) => (t.className || "table") + ": " + (t.textContent || "").trim().slice(0, 40))"""

# Buttons a thumb cannot hit (visible ones only).
SMALL_TARGETS = """() => [...document.querySelectorAll(
    "main button, main [role=button], main input[type=submit], .topbar button, .sidebar button")]
  .filter((e) => {
    const box = e.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && box.height < 44;
  })
  .map((e) => {
    const height = Math.round(e.getBoundingClientRect().height);
    return `${(e.textContent || e.value || "").trim().slice(0, 30)} ${height} px`;
  })"""


@pytest.fixture
def tenant() -> Tenant:
    """The world's tenant is not the demo's ``acme``: the demo data loads beside it."""
    tenant = TenantFactory(slug="initech", name="Initech")
    for position, slug in enumerate(["development", "staging", "production"]):
        EnvironmentFactory(
            tenant=tenant,
            slug=slug,
            name=slug.title(),
            position=position,
            is_production=slug == "production",
        )
    return tenant


def _pages(objects: dict[str, Any], with_arguments: bool = True) -> list[str]:
    """The path of every UI page an Admin may open (GET, not the API, not a fragment)."""
    paths = []
    for name, route in sorted(ROUTES.items()):
        if route.args and not with_arguments:
            continue
        if "GET" not in route.methods or route.methods["GET"] == PUBLIC or name in NOT_PAGES:
            continue
        if URLS[name].startswith(("api/", "django-admin/")) or name in HEADERS:
            continue
        path = reverse(name, kwargs=objects["args"][route.args] if route.args else None)
        if DOWNLOAD.search(path):
            continue
        if name in QUERY:
            path += "?" + QUERY[name].format(environment=objects["args"]["environment"]["pk"])
        paths.append(path)
    return paths


def _check(page: Page, path: str) -> list[str]:
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        problems += [f"{path} at {width} px: {p}" for p in page.evaluate(OVERFLOW)]
        if width == 390:
            problems += [f"{path}: table not in a region: {t}" for t in page.evaluate(BARE_TABLES)]
            problems += [f"{path}: small target: {t}" for t in page.evaluate(SMALL_TARGETS)]
    return problems


def _walk(page: Page, base: str, paths: list[str]) -> tuple[int, list[str]]:
    checked, problems = 0, []
    for path in paths:
        try:
            response = page.goto(base + path, wait_until="load")
        except PlaywrightError as error:
            if "Download is starting" in str(error):
                continue  # an export: a file, not a page
            raise
        assert response is not None, path
        if response.status != 200 or not response.headers.get("content-type", "").startswith(
            "text/html"
        ):
            continue  # a download, or an action's URL that redirects to its page
        if page.locator("nav.sidebar").count() == 0:
            continue  # an htmx fragment: it is checked inside the page that holds it
        page.wait_for_timeout(100)  # htmx's first swaps
        problems += _check(page, path)
        checked += 1
    return checked, problems


def test_every_page__390_and_320_px__no_sideways_scrolling(
    asgi_server: str,
    page: Page,
    world: dict[str, Any],  # noqa: F811
) -> None:
    admin = world["users"]["admin"]
    call_command("seed_demo", verbosity=0)  # the demo tenant, with rows in every list
    assign_perm(TENANT_ACCESS_PERMISSION, admin, Tenant.objects.get(slug="acme"))
    problems: list[str] = []
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{asgi_server}/login/")
    problems += _check(page, "/login/")
    log_in(page, asgi_server, admin.username)

    # every page of the world's tenant (one object of every kind), then every list of the demo
    page.get_by_label("Tenant", exact=True).select_option("initech")
    expect(page.get_by_label("Tenant", exact=True)).to_have_value("initech")
    checked, found = _walk(page, asgi_server, _pages(world))
    problems += found
    page.get_by_label("Tenant", exact=True).select_option("acme")
    expect(page.get_by_label("Tenant", exact=True)).to_have_value("acme")
    more, found = _walk(page, asgi_server, _pages(world, with_arguments=False))
    problems += [f"(demo) {p}" for p in found]
    assert checked > 40 and more > 15, f"only {checked} + {more} pages walked"
    assert not problems, "\n".join(problems)


def test_phone__menu_button_skip_link_and_the_kill_switches(
    asgi_server: str,
    page: Page,
    world: dict[str, Any],  # noqa: F811
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, asgi_server, world["users"]["admin"].username)

    # the sidebar is a Menu button that unfolds the links
    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    links = page.locator(f"#{menu.get_attribute('aria-controls')}")
    expect(links).to_be_hidden()
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(links.get_by_role("link", name="Audit")).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "menu-phone.png"))  # to look at, not compared
    page.keyboard.press("Tab")  # into the menu; Escape folds it and gives the focus back
    page.keyboard.press("Escape")
    expect(links).to_be_hidden()
    expect(menu).to_be_focused()
    menu.click()
    links.get_by_role("link", name="Flags & kill switches").click()
    expect(page).to_have_url(f"{asgi_server}/flags/")

    # the skip link is the first stop of the Tab key and lands on the page's content
    page.goto(f"{asgi_server}/flags/kill-switches/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()

    # the kill switches: one column, every control at least 44 px tall and on the screen
    assert page.evaluate(OVERFLOW) == []
    buttons = page.locator("main .kill-button, main .release-button")
    assert buttons.count() > 0
    for index in range(buttons.count()):
        box = buttons.nth(index).bounding_box()
        assert box and box["height"] >= 44 and box["x"] >= 0 and box["x"] + box["width"] <= 390

    # above the breakpoint nothing changes: the sidebar's links shown, no Menu button
    page.set_viewport_size({"width": 1280, "height": 900})
    expect(menu).to_be_hidden()
    expect(
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit")
    ).to_be_visible()


def test_no_javascript__sidebar_links_shown_stacked(
    asgi_server: str,
    browser: Browser,
    world: dict[str, Any],  # noqa: F811
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 800}, java_script_enabled=False)
    page = context.new_page()
    try:
        log_in(page, asgi_server, world["users"]["admin"].username)
        expect(page.get_by_role("button", name="Menu")).to_be_hidden()
        expect(
            page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit")
        ).to_be_visible()
        # stacked above the page, not beside it (a wide table may widen the page without
        # the script that puts it in its region: docs/decisions/0031)
        sidebar = page.get_by_role("navigation", name="Main").bounding_box()
        main = page.locator("main#main").bounding_box()
        assert sidebar and main and sidebar["y"] + sidebar["height"] <= main["y"]
        assert sidebar["width"] <= 390
    finally:
        context.close()


def test_table_swapped_in_by_htmx__in_its_region_too(
    asgi_server: str,
    page: Page,
    world: dict[str, Any],  # noqa: F811
) -> None:
    """The running rollout's live part (verdicts, decisions, timeline: tables) is replaced by
    htmx every few seconds; the new tables are wrapped as the first ones were."""
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, asgi_server, world["users"]["admin"].username)
    page.goto(asgi_server + reverse("rollouts:rollout_detail", kwargs=world["args"]["rollout"]))
    first = page.locator("#rollout-live table").first
    expect(first).to_be_attached()
    page.evaluate("window.__firstTable = document.querySelector('#rollout-live table')")
    page.wait_for_function(
        "() => !document.contains(window.__firstTable)"
        " && document.querySelector('#rollout-live table')"
    )
    assert page.evaluate(BARE_TABLES) == []
    assert page.evaluate(OVERFLOW) == []
    region = page.locator("#rollout-live .table-scroll").first
    expect(region).to_have_attribute("role", "region")
    expect(region).to_have_attribute("tabindex", "0")
