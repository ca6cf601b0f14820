"""The OpenAPI document and the offline API docs, and that every asset a page names loads."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from drf_spectacular.validation import validate_schema

from ..html import external_references, local_assets

pytestmark = pytest.mark.django_db

HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


@pytest.fixture
def client(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def schema(client: Client) -> dict[str, Any]:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return json.loads(response.content)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def test_api_schema__is_a_valid_openapi_3_document(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Agent control plane API"
    validate_schema(schema)  # drf-spectacular's bundled OpenAPI 3 JSON Schema


def test_api_schema__documents_the_operator_api(schema: dict[str, Any]) -> None:
    paths = set(schema["paths"])
    assert {
        "/api/v1/tenants/",
        "/api/v1/agents/{id}/",
        "/api/v1/agents/{id}/archive/",
        "/api/v1/environments/{id}/move/",
        "/api/v1/users/",
        "/api/v1/users/{id}/grant-tenant/",
        "/api/v1/auth/token/",
        "/api/v1/me/",
        "/api/v1/audit-events/",
    } <= paths


def test_api_schema__every_operation_has_a_response_schema(schema: dict[str, Any]) -> None:
    missing = []
    for path, method, operation in _operations(schema):
        for status, response in operation["responses"].items():
            has_schema = "schema" in next(iter(response.get("content", {}).values()), {})
            if not has_schema and status != "204":
                missing.append(f"{method.upper()} {path} -> {status}")
    assert missing == []


def test_api_schema__every_operation_has_a_success_response(schema: dict[str, Any]) -> None:
    without = [
        f"{m.upper()} {p}"
        for p, m, op in _operations(schema)
        if not any(str(status).startswith("2") for status in op["responses"])
    ]
    assert without == []


def test_api_schema__operation_ids_unique(schema: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(schema)]
    assert len(ids) == len(set(ids))


def test_api_schema__generation__no_warnings_and_valid(tmp_path: Path) -> None:
    """drf-spectacular warns about views it cannot describe (a missing serializer, an unknown
    authenticator): each one is a hole in what a fuzzer or client generator sees."""
    err = StringIO()
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
        stderr=err,
    )
    assert err.getvalue() == ""


# --------------------------------------------------------------------------- docs pages and assets


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_api_docs__renders_with_assets_from_static(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert external_references(html) == []
    assets = local_assets(html)
    assert assets
    assert all(a.startswith("/static/drf_spectacular_sidecar/") for a in assets), assets


def _asset_statuses(client: Client, url: str) -> dict[str, int]:
    page = client.get(url)
    assert page.status_code == 200
    return {asset: client.get(asset).status_code for asset in local_assets(page.content.decode())}


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/", "/", "/agents/", "/audit/"])
def test_page_assets__every_referenced_static_file_loads(client: Client, url: str) -> None:
    statuses = _asset_statuses(client, url)
    assert statuses
    assert set(statuses.values()) == {200}, statuses


def test_login_page_assets__load_for_anonymous_visitors() -> None:
    statuses = _asset_statuses(Client(), "/login/")
    assert statuses
    assert set(statuses.values()) == {200}, statuses


def test_base_layout__loads_the_vendored_css_and_htmx(client: Client) -> None:
    assets = local_assets(client.get("/").content.decode())
    assert {
        "/static/vendor/pico/pico.min.css",
        "/static/css/app.css",
        "/static/vendor/htmx/htmx.min.js",
    } <= set(assets)


@pytest.mark.parametrize("stylesheet", ["/static/vendor/pico/pico.min.css", "/static/css/app.css"])
def test_stylesheets__fetch_nothing_from_elsewhere(client: Client, stylesheet: str) -> None:
    response = client.get(stylesheet)
    css = (
        b"".join(response.streaming_content).decode()
        if response.streaming
        else response.content.decode()
    )
    urls = [u.strip("'\"") for u in re.findall(r"url\(([^)]*)\)", css)]
    assert [u for u in urls if not u.startswith("data:")] == []
    assert "@import" not in css


def test_swagger_docs__points_at_the_local_schema(client: Client) -> None:
    html = client.get("/api/docs/").content.decode()
    assert "/api/schema/" in html
