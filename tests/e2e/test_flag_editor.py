"""An Operator builds a 25% gradual rollout with a constraint in a real headless Chromium
without typing JSON (the structured editor, with its script adding the constraint row and
keeping the operator list fitting the field); then the pinned Unleash Python SDK, pointed at
the running product, buckets 25% ± 2% of 4,000 user ids that satisfy the constraint (the
same ones as the data plane's bucketing) and none of those that do not."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from apps.flags.models import Flag
from apps.tenancy.models import Tenant
from dataplane.bucketing import flexible_rollout_enabled

from ..conformance.conftest import SdkFactory, sdk  # noqa: F401 (the SDK fixture)
from ..flags.conftest import make_token
from .conftest import log_in

USERS = [f"user-{i}" for i in range(4_000)]


def test_flag_editor__operator_builds_25_percent_rollout_with_constraint__sdk_buckets_25_percent(
    asgi_server: str,
    page: Page,
    operator: User,
    tenant: Tenant,
    sdk: SdkFactory,  # noqa: F811
) -> None:
    development = tenant.environments.get(slug="development")
    log_in(page, asgi_server, operator.username)
    page.goto(f"{asgi_server}/flags/?environment={development.pk}")
    page.get_by_role("link", name="New flag").click()

    page.get_by_label("Name", exact=True).fill("new-checkout")
    page.get_by_label("On (SDKs evaluate its strategies)").check()
    expect(page.get_by_label("Strategy", exact=True)).to_have_value("flexibleRollout")
    page.get_by_label("Rollout (%)").fill("25")
    page.get_by_label("Stickiness").fill("userId")
    page.get_by_role("button", name="Add a constraint").click()  # in place, by the script
    constraint = page.locator(".constraint-row")
    expect(constraint).to_have_count(1)
    operators = constraint.get_by_label("Operator")

    # the operator list fits the field: only the date operators for currentTime
    constraint.get_by_label("Context field").fill("currentTime")
    expect(operators).to_have_value("DATE_AFTER")
    expect(operators.locator("option:not([disabled])")).to_have_count(2)
    constraint.get_by_label("Context field").fill("country")
    expect(operators.locator("option[value=DATE_AFTER]")).to_be_disabled()
    operators.select_option("IN")
    constraint.get_by_label("Values", exact=True).fill("de\nat")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.get_by_role("heading", name="new-checkout")).to_be_visible()
    expect(page.locator(".strategy")).to_contain_text("rollout=25")
    expect(page.locator(".strategy")).to_contain_text("country IN [de, at]")
    flag = Flag.objects.get(name="new-checkout")
    assert flag.enabled
    assert flag.strategies[0]["parameters"] == {
        "rollout": "25",
        "stickiness": "userId",
        "groupId": "new-checkout",
    }

    client = sdk(make_token(development))
    inside = {
        u
        for u in USERS
        if client.is_enabled("new-checkout", {"userId": u, "properties": {"country": "de"}})
    }
    outside = {
        u
        for u in USERS
        if client.is_enabled("new-checkout", {"userId": u, "properties": {"country": "fr"}})
    }

    assert 0.23 <= len(inside) / len(USERS) <= 0.27, len(inside)
    assert outside == set()
    assert inside == {
        u for u in USERS if flexible_rollout_enabled(25, "new-checkout", "userId", {"userId": u})
    }


def test_flag_editor__bad_rollout__error_in_words_on_the_strategy(
    asgi_server: str, page: Page, operator: User, tenant: Tenant
) -> None:
    development = tenant.environments.get(slug="development")
    log_in(page, asgi_server, operator.username)
    page.goto(f"{asgi_server}/flags/new/?environment={development.pk}")
    page.get_by_label("Name", exact=True).fill("new-checkout")
    page.get_by_label("Rollout (%)").fill("150")
    page.get_by_role("button", name="Add a constraint").click()
    page.locator(".constraint-row").get_by_label("Context field").fill("country")
    page.get_by_role("button", name="Save", exact=True).click()

    strategy = page.locator("[data-strategy]")
    expect(strategy).to_contain_text("Strategy 1: rollout must be a whole number from 0 to 100.")
    expect(page.locator(".constraint-row")).to_contain_text(
        "Strategy 1, constraint 1: values are required for IN."
    )
    assert not Flag.objects.exists()
