"""The one runtime-token revoke page (linked from the Runtimes and the Kill switches pages)."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.tenancy.models import Tenant

pytestmark = pytest.mark.django_db

SYSTEM = SystemActor("test")


@pytest.fixture
def browser(operator) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def token(tenant: Tenant) -> RuntimeToken:
    environment = tenant.environments.get(slug="production")
    row, _ = runtime_token_create(
        actor=SYSTEM, tenant=tenant, environment=environment, name="fleet"
    )
    return row


def test_token_revoke__runtimes_page_link__confirms_then_back_to_runtimes(
    browser: Client, token: RuntimeToken
) -> None:
    url = f"/runtimes/tokens/{token.pk}/revoke/"
    assert f'href="{url}"' in browser.get("/runtimes/").content.decode()
    page = browser.get(url).content.decode()
    assert f"Revoke runtime token {token}?" in page
    assert "0 registered in Production" in page
    assert 'name="expected_version"' not in page  # a token carries no version

    response = browser.post(url, {"reason": "leaked"})

    assert response.status_code == 302 and response["Location"] == "/runtimes/"
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_token_revoke__no_reason__field_error_and_nothing_revoked(
    browser: Client, token: RuntimeToken
) -> None:
    response = browser.post(f"/runtimes/tokens/{token.pk}/revoke/", {"reason": "  "})

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is None


def test_token_revoke__next_elsewhere__back_to_runtimes_not_away(
    browser: Client, token: RuntimeToken
) -> None:
    response = browser.post(
        f"/runtimes/tokens/{token.pk}/revoke/?next=https://evil.example/", {"reason": "leaked"}
    )

    assert response.status_code == 302 and response["Location"] == "/runtimes/"


def test_token_revoke__already_revoked__told_on_the_page(
    browser: Client, token: RuntimeToken
) -> None:
    url = f"/runtimes/tokens/{token.pk}/revoke/"
    browser.post(url, {"reason": "leaked"})

    again = browser.post(url, {"reason": "leaked again"})

    assert again.status_code == 200
    assert "This token is already revoked." in again.content.decode()
