"""Every answer that shows a secret once (a runtime or API token, an initial or one-time
password, an alert channel's signing secret), on a page or over the API, tells every cache and
the browser's history to keep no copy: ``Cache-Control: no-store`` (RFC 9111 5.2.2.5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.alerts.services import alert_channel_create
from apps.audit.services import SystemActor
from apps.core.roles import Role
from apps.tenancy.models import Tenant
from tests.conftest import api_as
from tests.factories import make_user


def _page(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _channel(tenant: Tenant) -> int:
    channel, _ = alert_channel_create(
        actor=SystemActor("t"), tenant=tenant, name="pager", url="http://127.0.0.1:9/"
    )
    return channel.pk


def _user() -> int:
    return make_user(Role.VIEWER, username="nina").pk


# what -> the request, made as (admin, tenant), whose answer shows a secret
SITES: dict[str, Callable[[Any, Tenant], Any]] = {
    "page: new runtime token": lambda admin, tenant: _page(admin).post(
        "/runtimes/tokens/new/",
        {
            "environment": tenant.environments.get(slug="production").pk,
            "name": "edge",
            "reason": "new runtime",
        },
    ),
    "page: new alert channel": lambda admin, tenant: _page(admin).post(
        "/alerts/channels/new/", {"name": "pager", "url": "http://127.0.0.1:9/hook"}
    ),
    "page: rotated alert secret": lambda admin, tenant: _page(admin).post(
        f"/alerts/channels/{_channel(tenant)}/rotate/",
        {"reason": "leaked", "expected_version": 1},
    ),
    "page: new user": lambda admin, tenant: _page(admin).post(
        "/users/new/", {"username": "nora", "role": "Viewer", "reason": "joins"}
    ),
    "page: password reset": lambda admin, tenant: _page(admin).post(
        f"/users/{_user()}/password-reset/", {"reason": "forgot"}
    ),
    "page: new API token": lambda admin, tenant: _page(admin).post("/profile/api-token/"),
    "api: new runtime token": lambda admin, tenant: api_as(admin).post(
        "/api/v1/runtime-tokens/",
        {"environment": tenant.environments.get(slug="production").pk, "name": "edge"},
        format="json",
    ),
    "api: new alert channel": lambda admin, tenant: api_as(admin).post(
        "/api/v1/alert-channels/",
        {"tenant": tenant.pk, "name": "pager", "url": "http://127.0.0.1:9/hook"},
        format="json",
    ),
    "api: rotated alert secret": lambda admin, tenant: api_as(admin).post(
        f"/api/v1/alert-channels/{_channel(tenant)}/rotate-secret/",
        {"reason": "leaked", "expected_version": 1},
        format="json",
    ),
    "api: new user": lambda admin, tenant: api_as(admin).post(
        "/api/v1/users/", {"username": "nora", "role": "Viewer", "reason": "joins"}, format="json"
    ),
    "api: password reset": lambda admin, tenant: api_as(admin).post(
        f"/api/v1/users/{_user()}/reset-password/", {"reason": "forgot"}, format="json"
    ),
}


@pytest.fixture
def loopback(settings: Any) -> None:
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.0/8"]


@pytest.mark.parametrize("site", sorted(SITES))
def test_secret_shown_once__no_store(site: str, admin: Any, tenant: Tenant, loopback: None) -> None:
    response = SITES[site](admin, tenant)

    assert response.status_code in (200, 201), response.content[:500]
    assert "no-store" in response["Cache-Control"], site


def test_token_exchange__no_store(db: None) -> None:
    make_user(Role.VIEWER, username="ivy")

    response = APIClient().post(
        "/api/v1/auth/token/",
        {"username": "ivy", "password": "pw-for-tests-123"},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
