"""The on-call engineer at 3 a.m., keyboard only, in Debian's headless Chromium (issue "Usable on
a phone and by keyboard", part B): engage and release a kill switch, and roll an agent back while
its releases section refreshes itself, with Tab, Enter and Space alone. The focus is never lost to
<body> while the live parts refresh, and "Pause live updates" stops every poll until resumed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.flags.models import KillSwitch
from apps.rollouts.selectors import deployment_current
from apps.rollouts.services import deployment_create
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory
from .conftest import log_in

DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
ACTOR = SystemActor("test")
MAX_TABS = 80

# Installed before any page script: every moment the focus sits on <body> after the journey
# "arms" the watch (a swap that replaced the focused element leaves it there).
WATCH_FOCUS = """
window.__focusLost = [];
window.__armed = false;
const check = () => {
  if (window.__armed && document.activeElement === document.body) {
    window.__focusLost.push(location.pathname);
  }
};
document.addEventListener("htmx:afterSettle", check);
document.addEventListener("focusout", () => setTimeout(check, 0));
setInterval(check, 25);
"""


def _tab_to(page: Page, matches: Callable[[dict[str, str]], bool], what: str) -> int:
    """Press Tab until the focused element matches (keyboard only: no click, no .focus());
    returns how many presses it took."""
    for presses in range(1, MAX_TABS + 1):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => { const e = document.activeElement; return {
                 tag: e.tagName.toLowerCase(), id: e.id || "",
                 text: (e.innerText || e.value || "").trim(),
                 label: e.labels && e.labels[0] ? e.labels[0].innerText.trim() : "" }; }"""
        )
        if matches(focused):
            return presses
    raise AssertionError(f"{MAX_TABS} presses of Tab never reached {what}")


def _named(text: str) -> Callable[[dict[str, str]], bool]:
    return lambda f: f["text"] == text


def _labelled(label: str) -> Callable[[dict[str, str]], bool]:
    return lambda f: f["label"].startswith(label)


def _agent_with_history(tenant: Tenant) -> tuple[Agent, Environment]:
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    staging = tenant.environments.get(slug="staging")
    source = (DEMO / "support-bot-v1.yaml").read_text()
    for n in (1, 2):
        version = bundle_version_push(
            actor=ACTOR,
            agent=agent,
            message=f"build {n}",
            source=source.replace("Answers customer", f"Answers (build {n}) customer"),
        ).version
        deployment_create(
            actor=ACTOR, agent=agent, environment=staging, version=version, reason="ship"
        )
    return agent, staging


def test_roll_back__keyboard_only_while_releases_refresh__focus_never_lost(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    agent, staging = _agent_with_history(tenant)
    page.add_init_script(WATCH_FOCUS)
    log_in(page, asgi_server, operator.username)
    page.goto(f"{asgi_server}/agents/{agent.pk}/")
    rollback = page.locator(f"#rollback-{staging.pk}")
    expect(rollback).to_have_text("Roll back to v1")

    _tab_to(page, _named("Roll back to v1"), "the rollback button")
    # the very element the user reached (not a copy put back by id after a swap: a screen reader
    # would announce it again, and an element without an id would not be put back at all)
    page.evaluate("window.__armed = true; document.activeElement.__reached = true")
    # past a refresh interval: two polls of the releases section answer while it holds the focus
    for _ in range(2):
        with page.expect_response(lambda r: f"/agents/{agent.pk}/releases/" in r.url):
            pass
    expect(rollback).to_be_focused()
    assert page.evaluate("document.activeElement.__reached === true")
    assert page.evaluate("window.__focusLost") == []
    expect(page.locator("#releases")).to_have_attribute("data-live-held", "")

    # the focus leaves the section: what was held back is shown at once; and back again
    presses = _tab_to(page, _named("All versions"), "the first link after the releases")
    expect(page.locator("#releases")).not_to_have_attribute("data-live-held", "")
    for _ in range(presses):
        page.keyboard.press("Shift+Tab")
    expect(rollback).to_be_focused()
    assert page.evaluate("window.__focusLost") == []

    page.keyboard.press("Space")  # a real button: Space activates it
    expect(
        page.get_by_role("heading", name="Roll back Support bot in Staging to v1?")
    ).to_be_visible()
    _tab_to(page, _labelled("Reason"), "the reason")
    page.keyboard.type("refunds spiked at 3 a.m.")
    _tab_to(page, _named("Roll back to v1 now"), "the confirm button")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("serves v1 again")
    current = deployment_current(agent=agent, environment=staging)
    assert current is not None and current.version.number == 1


def test_kill_switch__engage_and_release_by_keyboard_only(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    page.add_init_script(WATCH_FOCUS)
    log_in(page, asgi_server, operator.username)
    page.goto(f"{asgi_server}/flags/kill-switches/")

    _tab_to(page, _named("Stop Support bot…"), "the stop button")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Engage kill switch")).to_be_visible()
    # a submit without a reason: the focus goes to the reason, which names its error
    _tab_to(page, _named("Engage kill switch"), "the engage button")
    page.keyboard.press("Space")
    reason = page.get_by_label("Reason")
    expect(reason).to_be_focused()
    expect(reason).to_have_attribute("aria-invalid", "true")
    assert not KillSwitch.objects.exists()
    page.keyboard.type("answers in Klingon")
    _tab_to(page, _named("Engage kill switch"), "the engage button")
    page.keyboard.press("Space")
    expect(page.locator(".kill-engaged")).to_have_count(1)
    switch = KillSwitch.objects.get()
    assert switch.is_engaged

    # the release link sits outside the propagation parts that refresh every 2 s
    _tab_to(page, _named(f"Release #{switch.pk}…"), "the release link")
    page.evaluate("window.__armed = true")
    for _ in range(2):
        with page.expect_response(lambda r: "/runtimes/propagation/" in r.url):
            pass
    expect(page.get_by_role("link", name=f"Release #{switch.pk}…")).to_be_focused()
    assert page.evaluate("window.__focusLost") == []
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Release", exact=True)).to_be_visible()
    _tab_to(page, _labelled("Reason"), "the reason")
    page.keyboard.type("Klingon fixed")
    _tab_to(page, _named("Release"), "the release button")
    page.keyboard.press("Space")
    expect(page.get_by_text(f"No kill switch is engaged in {tenant.name}.")).to_be_visible()
    switch.refresh_from_db()
    assert not switch.is_engaged


def test_pause_live_updates__by_keyboard__no_poll_until_resumed_and_remembered(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    agent, _ = _agent_with_history(tenant)
    log_in(page, asgi_server, operator.username)
    polls: list[str] = []
    page.on(
        "request",
        lambda r: polls.append(r.url) if f"/agents/{agent.pk}/releases/" in r.url else None,
    )
    page.clock.install()  # the page's timers run when the test says, not on the wall clock
    page.goto(f"{asgi_server}/agents/{agent.pk}/")
    toggle = page.get_by_role("button", name="Pause live updates")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    _tab_to(page, _named("Pause live updates"), "the pause control")
    page.keyboard.press("Space")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_text("Live updates paused")).to_be_visible()

    # remembered: a new page loads each live part once, then polls nothing
    polls.clear()
    with page.expect_response(lambda r: f"/agents/{agent.pk}/releases/" in r.url):
        page.reload()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    page.clock.run_for(30_000)  # six refresh intervals of the releases section
    page.wait_for_load_state("networkidle")
    assert len(polls) == 1, polls

    # resumed: the next interval polls again
    _tab_to(page, _named("Pause live updates"), "the pause control")
    page.keyboard.press("Space")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    with page.expect_request(lambda r: f"/agents/{agent.pk}/releases/" in r.url):
        page.clock.run_for(6_000)
