"""The operator's and the approver's day, in a real headless Chromium: a Viewer reads flags,
kill switches, runtimes and the audit log without a button it may not press; a new user
must change the initial password at the first login; an Admin resets a password and the
user must change the one-time password."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.core.roles import Role
from apps.flags.services import flag_create, kill_switch_engage
from apps.tenancy.models import Tenant

from ..factories import AgentFactory, make_user
from .conftest import log_in

SYSTEM = SystemActor("e2e")
NEW = "Correct-horse-battery-42"


def _log_in_with(page: Page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def _log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def _change_password(page: Page, old: str, new: str) -> None:
    expect(page.get_by_role("heading", name="Change your password")).to_be_visible()
    page.get_by_label("Old password").fill(old)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("New password confirmation").fill(new)
    page.get_by_role("button", name="Change password").click()


def test_viewer__reads_flags_kill_switches_runtimes_and_audit__no_mutating_button(
    asgi_server: str, page: Page, viewer: User, tenant: Tenant
) -> None:
    production = tenant.environments.get(slug="production")
    agent = AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")
    flag_create(actor=SYSTEM, environment=production, name="new-checkout", reason="e2e")
    kill_switch_engage(
        actor=SYSTEM, kind="agent_stopped", scope="agent", tenant=tenant, agent=agent, reason="loop"
    )
    runtime_token_create(actor=SYSTEM, tenant=tenant, environment=production, name="fleet-a")
    log_in(page, asgi_server, viewer.username)
    main = page.get_by_role("main")
    sidebar = page.get_by_role("navigation", name="Main")
    expect(sidebar.get_by_role("link", name="Users & roles")).to_have_count(0)

    sidebar.get_by_role("link", name="Flags & kill switches").click()
    page.goto(f"{asgi_server}/flags/?environment={production.pk}")
    expect(main.get_by_role("link", name="new-checkout")).to_be_visible()
    for name in ("New flag", "Import from Unleash", "New segment"):
        expect(main.get_by_role("link", name=name)).to_have_count(0)
    expect(main.get_by_role("button", name="Turn")).to_have_count(0)
    expect(main.get_by_role("link", name="Turn")).to_have_count(0)

    main.get_by_role("link", name="new-checkout").click()
    expect(page.get_by_role("heading", name="new-checkout")).to_be_visible()
    for name in ("Edit", "Delete", "Turn"):
        expect(main.get_by_role("link", name=name)).to_have_count(0)
        expect(main.get_by_role("button", name=name)).to_have_count(0)

    page.goto(f"{asgi_server}/flags/kill-switches/")
    engaged = page.locator(".kill-engaged")
    expect(engaged).to_have_count(1)
    expect(engaged).to_contain_text("loop")
    expect(main.get_by_role("link", name="Release")).to_have_count(0)
    expect(main.get_by_role("button", name="Release")).to_have_count(0)
    expect(main.get_by_role("link", name="Stop")).to_have_count(0)
    expect(main.get_by_role("button", name="Engage")).to_have_count(0)
    expect(main.locator("form[method=post]")).to_have_count(0)

    sidebar.get_by_role("link", name="Runtimes").click()
    expect(main.get_by_role("cell", name="fleet-a")).to_be_visible()
    expect(main.get_by_role("link", name="New runtime token")).to_have_count(0)
    expect(main.get_by_role("link", name="Revoke…")).to_have_count(0)

    sidebar.get_by_role("link", name="Audit").click()
    expect(main.get_by_role("row").filter(has_text="kill_switch.engaged")).to_have_count(1)
    expect(main.get_by_role("row").filter(has_text="flag.created")).to_have_count(1)


def test_new_user__initial_password__changed_at_first_login_then_logs_in_with_the_new_one(
    asgi_server: str, page: Page, admin: User, tenant: Tenant
) -> None:
    log_in(page, asgi_server, admin.username)
    page.goto(f"{asgi_server}/users/new/")
    page.get_by_label("Username").fill("nina")
    page.get_by_label("Role").select_option("Viewer")
    tenants = page.get_by_role("group", name="Tenants")
    tenants.get_by_label("Acme").check()  # the checkbox named by its tenant, in a fieldset
    page.get_by_role("button", name="Save").click()
    initial = page.get_by_test_id("initial-password").inner_text().strip()
    _log_out(page)

    _log_in_with(page, asgi_server, "nina", initial)
    _change_password(page, initial, "short")  # the validators say no, nothing changes
    expect(page.locator(".errorlist")).to_contain_text("too short")
    page.goto(f"{asgi_server}/flags/")  # every page leads back until it is changed
    _change_password(page, initial, NEW)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_text("Your password is changed.")).to_be_visible()
    # the tenant granted on creation: no "You do not see any tenant yet"
    expect(page.get_by_role("heading", name="Overview")).to_contain_text("Acme")
    _log_out(page)

    _log_in_with(page, asgi_server, "nina", NEW)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.goto(f"{asgi_server}/flags/")
    expect(page).to_have_url(f"{asgi_server}/flags/")


def test_admin_reset__one_time_password__user_must_change_it(
    asgi_server: str, page: Page, admin: User, tenant: Tenant
) -> None:
    user = make_user(Role.OPERATOR, tenant, username="otto")
    log_in(page, asgi_server, admin.username)
    page.goto(f"{asgi_server}/users/{user.pk}/")
    page.get_by_role("button", name="Reset password").click()  # opens the confirmation
    expect(page.get_by_role("heading", name="Reset the password of otto?")).to_be_visible()
    page.get_by_label("Reason").fill("forgot it after the holidays")
    page.get_by_role("button", name="Reset password").click()
    one_time = page.get_by_test_id("one-time-password").inner_text().strip()
    _log_out(page)

    _log_in_with(page, asgi_server, "otto", "pw-for-tests-123")  # the old one no longer works
    expect(page.get_by_text("Wrong username or password.")).to_be_visible()
    _log_in_with(page, asgi_server, "otto", one_time)
    page.goto(f"{asgi_server}/runtimes/")
    _change_password(page, one_time, NEW)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.goto(f"{asgi_server}/runtimes/")
    expect(page.get_by_role("heading", name="Runtimes")).to_be_visible()
