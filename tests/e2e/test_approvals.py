"""The approvals inbox in a real headless Chromium: an approver clears two requests with the
keyboard alone (j/k to move, a to approve, r + a comment + Enter to reject) while a new
request arrives by polling without moving the focus; the inbox at a phone's width (one
column, no horizontal scrolling, 44 px buttons); queue health's charts drawn; the README's
screenshot (saved under var/test/screenshots/approvals.png). No console error, no CSP
violation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from apps.approvals.models import ApprovalQueue, ApprovalRequest, Status
from apps.approvals.services import approval_decide, approval_open, queue_create
from apps.tenancy.models import Agent, Tenant

from ..approvals.conftest import ACTOR, agent, approver, approver2, body  # noqa: F401 - fixtures
from .conftest import log_in
from .test_csp import RECORD_VIOLATIONS, Problems

# What sticks out on the right, for the failure message.
WIDER_THAN_THE_SCREEN = """[...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 10)
  .map((e) => `${e.tagName}#${e.id}.${e.className} ${e.getBoundingClientRect().right}`)"""
SHOTS = Path(__file__).resolve().parents[2] / "var" / "test" / "screenshots"


def _open(tenant: Tenant, key: str, minutes_ago: float, **fields: Any) -> ApprovalRequest:
    return approval_open(
        tenant_id=tenant.pk,
        environment_id=tenant.environments.get(slug="production").pk,
        token_id=None,
        token_agent_id=None,
        token_label="fleet",
        body=body(idempotency_key=key, session_id=f"sess-{key}", **fields),
        now=timezone.now() - timedelta(minutes=minutes_ago),
    ).request


def _heading(page: Page) -> Any:
    return page.locator("#approval-detail #detail-heading")


def test_inbox__an_approver_clears_two_requests_with_the_keyboard_alone(
    asgi_server: str,
    page: Page,
    tenant: Tenant,
    agent: Agent,  # noqa: F811
    approver: User,  # noqa: F811
) -> None:
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "Support",
            "match_tools": ["send_email", "lookup_order"],
            "approvers": [approver],
        },
    )
    email = _open(
        tenant, "mail", 20, tool="send_email", arguments={"to": "c@example.com", "body": "Hi"}
    )
    lookup = _open(tenant, "look", 5, tool="lookup_order", arguments={"order_id": "A-7"})
    page.add_init_script(RECORD_VIOLATIONS)
    problems = Problems(page)
    log_in(page, asgi_server, approver.username)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals").click()
    page.wait_for_load_state()  # the shortcuts' script has run

    # the medium-risk email first (risk, then age), already open in the pane
    expect(_heading(page)).to_contain_text("send_email")
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_hidden()

    page.keyboard.press("j")
    expect(_heading(page)).to_contain_text("lookup_order")
    focused = page.locator(f"#req-{lookup.pk} .approval-link")
    expect(focused).to_be_focused()
    page.evaluate("document.activeElement.probe = 'kept'")  # on the element itself
    # a new request arrives while the approver works: the polled list shows it, and the
    # element holding the focus is the same element afterwards (never replaced)
    late = _open(tenant, "late", 1, tool="lookup_order", arguments={"order_id": "A-9"})
    expect(page.locator(f"#req-{late.pk}")).to_be_visible(timeout=12_000)
    assert page.evaluate("document.activeElement.probe") == "kept"
    expect(focused).to_be_focused()

    page.keyboard.press("k")
    expect(_heading(page)).to_contain_text("send_email")
    page.keyboard.press("j")
    expect(_heading(page)).to_contain_text(f"#{lookup.pk}")
    page.keyboard.press("a")  # approve the lookup; the next one opens
    expect(page.locator(f"#req-{lookup.pk}")).to_have_count(0)
    expect(_heading(page)).to_contain_text(f"#{late.pk}")
    expect(page.locator("#inbox-announce")).to_contain_text(f"Approved #{lookup.pk}")

    page.keyboard.press("k")
    expect(_heading(page)).to_contain_text(f"#{email.pk}")
    page.keyboard.press("r")
    expect(page.locator("#decision-comment")).to_be_focused()
    page.keyboard.type("Wrong recipient: ask the customer first")
    page.keyboard.press("Enter")
    expect(page.locator(f"#req-{email.pk}")).to_have_count(0)
    expect(page.locator("#inbox-announce")).to_contain_text(f"Rejected #{email.pk}")

    lookup.refresh_from_db()
    email.refresh_from_db()
    late.refresh_from_db()
    assert lookup.status == Status.APPROVED and lookup.decided_by_label == approver.username
    assert email.status == Status.REJECTED
    assert email.comment == "Wrong recipient: ask the customer first"
    assert late.status == Status.PENDING
    assert problems.check("approvals inbox") == [], problems.check("approvals inbox")


def _realistic_inbox(tenant: Tenant, alice: User, bob: User) -> ApprovalRequest:
    """Refunds (two approvers, critical), customer mail and order lookups, with history."""
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "Refunds",
            "match_tools": ["issue_refund"],
            "sla_s": 600,
            "timeout_s": 14_400,
            "approvers": [alice, bob],
        },
    )
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "Customer mail",
            "match_tools": ["send_*"],
            "timeout_s": 14_400,
            "approvers": [alice],
        },
    )
    queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": "Lookups", "match_tools": ["lookup_*"], "sla_s": 300, "approvers": [alice]},
    )
    excerpt = [
        {"role": "user", "content": "I was charged twice for order A-1187, please refund one."},
        {"role": "assistant", "content": "Let me look the order up."},
        {"role": "tool", "content": "lookup_order → 2 captures of $1,250.00 on 2026-12-04"},
    ]
    before = _open(
        tenant,
        "r-old",
        180,
        arguments={"order_id": "A-1187", "amount": 125.0, "currency": "USD", "lines": [1]},
    )
    approval_decide(actor=alice, request=before, choice="approve", comment="verified capture")
    approval_decide(actor=bob, request=before, choice="approve", comment="ok")
    mail = _open(
        tenant,
        "m-old",
        90,
        tool="send_email",
        arguments={"to": "dana@example.com", "subject": "Your refund"},
    )
    approval_decide(actor=alice, request=mail, choice="reject", comment="tone: rewrite first")
    shown = _open(
        tenant,
        "r-1",
        12,
        arguments={
            "order_id": "A-1187",
            "amount": 1250.0,
            "currency": "USD",
            "lines": [1, 2],
            "card_number": "4111111111111111",
        },
        reason="The customer was charged twice for A-1187; the second capture is a duplicate.",
        excerpt=excerpt,
        requested_by="dana@example.com",
    )
    _open(tenant, "r-2", 3, arguments={"order_id": "A-1190", "amount": 89.99})
    _open(
        tenant,
        "m-1",
        11,
        tool="send_email",
        arguments={"to": "lee@example.com", "subject": "About your order", "body": "Hello Lee…"},
    )
    _open(tenant, "l-1", 4.5, tool="lookup_order", arguments={"order_id": "A-1201"})
    _open(tenant, "l-2", 1, tool="lookup_order", arguments={"order_id": "A-1202"})
    return shown


def test_inbox__screenshot__phone_width__and_queue_health(
    asgi_server: str,
    page: Page,
    tenant: Tenant,
    agent: Agent,  # noqa: F811
    approver: User,  # noqa: F811
    approver2: User,  # noqa: F811
) -> None:
    shown = _realistic_inbox(tenant, approver, approver2)
    assert ApprovalQueue.objects.filter(tenant=tenant).count() >= 3
    page.add_init_script(RECORD_VIOLATIONS)
    problems = Problems(page)
    page.set_viewport_size({"width": 1440, "height": 1250})
    log_in(page, asgi_server, approver.username)

    page.goto(f"{asgi_server}/approvals/?request={shown.pk}")  # the deep link alerts use
    expect(_heading(page)).to_contain_text(f"#{shown.pk}")
    expect(page.get_by_test_id("changes")).to_contain_text("amount")
    expect(page.get_by_test_id("arguments")).to_contain_text("redacted")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "approvals.png"))

    # a phone: one column (the list, then the pane), nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(_heading(page)).to_contain_text(f"#{shown.pk}")
    width, screen = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= screen, page.evaluate(WIDER_THAN_THE_SCREEN)
    page.screenshot(path=str(SHOTS / "approvals-phone.png"), full_page=True)
    list_box = page.locator("#approval-list").bounding_box()
    pane_box = page.locator("#approval-detail").bounding_box()
    assert list_box and pane_box and list_box["y"] < pane_box["y"]
    for name in ("Approve", "Reject"):
        box = page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box and box["height"] >= 44, (name, box)
    row = page.locator("#approval-list .approval-link").first.bounding_box()
    assert row and row["height"] >= 44

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{asgi_server}/approvals/health/")
    expect(page.get_by_test_id("depth-chart").locator(".main-svg").first).to_be_visible()
    expect(page.get_by_test_id("expired-chart").locator(".main-svg").first).to_be_visible()
    expect(page.get_by_test_id("tool-table")).to_contain_text("issue_refund")
    assert problems.check("approvals") == [], problems.check("approvals")
