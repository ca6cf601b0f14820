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


_SERVED: dict[str, bytes] = {}


@pytest.fixture
def schema(client: Client) -> dict[str, Any]:
    """The document /api/schema/ serves an Operator, parsed afresh for each test. It is made
    from the code alone (nothing in the database changes it) and takes seconds to generate, so
    it is fetched once per process, by whichever test asks first."""
    if "schema" not in _SERVED:
        response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        assert response.status_code == 200
        _SERVED["schema"] = response.content
    return json.loads(_SERVED["schema"])


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
            # 204 and 304 carry no body by definition (RFC 9110).
            if not has_schema and status not in {"204", "304"}:
                missing.append(f"{method.upper()} {path} -> {status}")
    assert missing == []


def test_api_schema__every_operation_documents_503_with_retry_after(
    schema: dict[str, Any],
) -> None:
    # What any request answers while the database restarts (tests/runtimes/test_database_restart)
    undocumented = [
        f"{method.upper()} {path}"
        for path, method, operation in _operations(schema)
        if "Retry-After" not in operation["responses"].get("503", {}).get("headers", {})
    ]
    assert undocumented == []


def test_api_schema__every_operation_has_a_success_response(schema: dict[str, Any]) -> None:
    without = [
        f"{m.upper()} {p}"
        for p, m, op in _operations(schema)
        if not any(str(status).startswith("2") for status in op["responses"])
    ]
    assert without == []


def test_api_schema__every_fast_path_route_is_described(schema: dict[str, Any]) -> None:
    """The runtime fast path's routes never reach Django, so drf-spectacular cannot find them;
    each registered route describes its operations itself (``Route.docs``). A new route
    without a description fails here."""
    from apps.core.fastpath.registry import ActionRoute, AnyRoute, Route, WaitRoute, registry

    routes: list[AnyRoute] = registry.all()
    assert {route.path for route in routes} >= {
        "/api/client/features",
        "/api/client/features/{name:path}",
        "/api/client/streaming",
        "/api/runtime/v1/config",
        "/api/runtime/v1/budgets/reserve",
        "/api/runtime/v1/budgets/settle",
        "/api/runtime/v1/approvals",
        "/api/runtime/v1/approvals/{id}",
        "/api/runtime/v1/approvals/{id}/cancel",
    }
    undescribed = [route.path for route in routes if not route.docs]
    assert undescribed == []
    for route in routes:
        for doc in route.docs:
            if isinstance(route, ActionRoute):
                operation = schema["paths"][doc.path]["post"]
                assert operation["security"] == [{"runtimeToken": []}]
                assert {"200", "400", "401", "413"} <= set(operation["responses"])
                assert operation["requestBody"]["content"]["application/json"]["schema"]
                continue
            operation = schema["paths"][doc.path]["get"]
            assert operation["security"] == [{"runtimeToken": []}]
            assert "401" in operation["responses"]
            names = {p["name"] for p in operation["parameters"]}
            if isinstance(route, WaitRoute):
                assert {"wait", "id"} <= names and {"200", "400", "404"} <= set(
                    operation["responses"]
                )
                continue
            assert {"If-None-Match", "Accept-Encoding"} <= names  # documents and the stream
            if isinstance(route, Route):
                (wait,) = [p for p in operation["parameters"] if p["name"] == "wait"]
                assert wait["schema"]["maximum"] == route.max_wait_s
                assert {"200", "304", "400"} <= set(operation["responses"])
    assert schema["components"]["securitySchemes"]["runtimeToken"]["name"] == "Authorization"


# --------------------------------------------------------------------------- every route, described

# The API's own documentation (the document and the two pages that render it) is not an
# operation of the API.
DOCUMENTATION_ROUTES = {"api/schema/", "api/docs/", "api/redoc/"}
# Written for developers (apps.core.api.ScopedViewSet's docstring), never for API users.
INTERNAL_WORDS = ("base for", "queryset", "subclass", "the base class")


def _django_api_routes() -> set[tuple[str, str]]:
    """(route, method) of every URL pattern under /api/ that Django serves, walking the URL
    resolver itself (not drf-spectacular's view of it): a DRF viewset's mapped methods, an
    APIView's handlers, GET for a plain view. HEAD and OPTIONS are left out, as in the
    document."""
    from django.urls import URLPattern, URLResolver, get_resolver

    def walk(resolver: URLResolver, prefix: str) -> list[tuple[str, URLPattern]]:
        found = []
        for entry in resolver.url_patterns:
            # joined as ResolverMatch.route joins them (a nested regex loses its "^")
            route = prefix + str(entry.pattern).removeprefix("^")
            if isinstance(entry, URLResolver):
                found += walk(entry, route)
            else:
                found.append((route, entry))
        return found

    routes = set()
    for route, pattern in walk(get_resolver(), ""):
        if not route.startswith("api/") or route in DOCUMENTATION_ROUTES:
            continue
        callback = pattern.callback
        if hasattr(callback, "actions"):  # a DRF viewset: {"get": "list", ...}
            methods = set(callback.actions)
        elif hasattr(callback, "cls"):  # a DRF APIView
            methods = {m for m in callback.cls.http_method_names if hasattr(callback.cls, m)}
        else:
            methods = {"get"}
        routes |= {(route, m) for m in methods - {"head", "options"}}
    return routes


def _sample(path: str) -> str:
    """A concrete URL of an OpenAPI path template: every parameter becomes 1."""
    return re.sub(r"{[^}]+}", "1", path)


def test_api_schema__every_django_api_route_is_an_operation(schema: dict[str, Any]) -> None:
    from django.urls import Resolver404, resolve

    documented = set()
    for path, method, _ in _operations(schema):
        try:
            match = resolve(_sample(path))
        except Resolver404:  # a fast-path route: checked below
            continue
        documented.add((match.route, method))
    routes = _django_api_routes()
    assert len(routes) > 50
    assert sorted(routes - documented) == []


def test_api_schema__every_fast_path_route_is_an_operation(schema: dict[str, Any]) -> None:
    from apps.core.fastpath.registry import compile_path, registry

    samples = [(_sample(path), method) for path, method, _ in _operations(schema)]
    missing = []
    for route in registry.all():
        pattern = compile_path(route.path)
        for method in set(route.methods) - {"HEAD"}:
            if not any(
                (pattern.match(url) if pattern else url == route.path) and m == method.lower()
                for url, m in samples
            ):
                missing.append(f"{method} {route.path}")
    assert registry.all()
    assert missing == []


def test_api_schema__every_operation_says_what_it_does_for_its_users(
    schema: dict[str, Any],
) -> None:
    """A summary, a description written for the caller (not a base class's notes for
    developers) and a tag that groups it, on every operation: Django's and the fast path's."""
    faults = []
    for path, method, operation in _operations(schema):
        name = f"{method.upper()} {path}"
        description = operation.get("description", "").strip()
        if not description:
            faults.append(f"{name}: no description")
        elif any(word in description.lower() for word in INTERNAL_WORDS):
            faults.append(f"{name}: internal description {description[:60]!r}")
        if not operation.get("summary", "").strip():
            faults.append(f"{name}: no summary")
        tags = operation.get("tags") or []
        if not tags or not all(tag.strip() for tag in tags) or "v1" in tags:
            faults.append(f"{name}: tags {tags}")
    assert faults == []


def test_api_schema__tags_are_described_and_spelled_one_way(schema: dict[str, Any]) -> None:
    described = {tag["name"]: tag.get("description", "") for tag in schema.get("tags", [])}
    used = {tag for _, _, op in _operations(schema) for tag in op.get("tags", [])}
    assert {"runtime", "unleash-client", "tenancy", "flags"} <= used
    # "unleash client" and "unleash-client" were once two headings for one API
    spellings = {re.sub(r"[^a-z]", "", tag.lower()) for tag in used}
    assert len(spellings) == len(used)
    assert all(described.get(tag) for tag in used & set(described))


def test_api_schema__runtime_and_client_apis_document_token_and_conditional_requests(
    schema: dict[str, Any],
) -> None:
    config = schema["paths"]["/api/runtime/v1/config"]["get"]
    features = schema["paths"]["/api/client/features"]["get"]
    for operation in (config, features):
        assert operation["security"] == [{"runtimeToken": []}]
        names = {p["name"] for p in operation["parameters"]}
        assert {"If-None-Match", "wait"} <= names
        assert "ETag" in operation["responses"]["200"]["headers"]
        assert "304" in operation["responses"]
    register = schema["paths"]["/api/client/register"]["post"]
    assert register["security"] == [{"runtimeToken": []}]


def test_api_schema__client_features_parameters_as_unleash_sdks_send_them(
    schema: dict[str, Any],
) -> None:
    features = schema["paths"]["/api/client/features"]["get"]
    parameters = {p["name"]: p for p in features["parameters"]}
    assert parameters["namePrefix"]["in"] == "query"
    assert parameters["project"]["schema"]["type"] == "array"  # repeatable
    assert parameters["project"]["explode"] is True
    assert parameters["Unleash-Client-Spec"]["in"] == "header"
    one = schema["paths"]["/api/client/features/{name}"]["get"]
    assert "404" in one["responses"]
    assert {p["name"] for p in one["parameters"] if p["in"] == "path"} == {"name"}


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
    # Swagger UI's start-up script is served by the docs view itself (no inline script).
    assets = [a for a in local_assets(html) if a != "/api/docs/?script="]
    assert assets
    # Swagger UI / ReDoc from the sidecar package; our own stylesheet (its method badges' contrast)
    ours = {"/static/css/api-docs.css"}
    assert all(a.startswith("/static/drf_spectacular_sidecar/") or a in ours for a in assets), (
        assets
    )


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_api_docs__say_their_language(client: Client, url: str) -> None:
    # drf-spectacular's own templates have a bare <html> (WCAG 3.1.1)
    assert '<html lang="en">' in client.get(url).content.decode()


def test_api_docs__method_badges_restyled_for_contrast(client: Client) -> None:
    assert "/static/css/api-docs.css" in local_assets(client.get("/api/docs/").content.decode())


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


@pytest.mark.parametrize("url", ["/", "/agents/", "/flags/", "/login/"])
def test_pages__link_the_favicon_from_static(url: str, operator: User) -> None:
    client = Client()
    if url != "/login/":
        client.force_login(operator)
    html = client.get(url).content.decode()
    assert '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">' in html
    icon = client.get("/static/img/favicon.svg")
    assert icon.status_code == 200
    assert icon["Content-Type"].startswith("image/svg+xml")


def test_favicon_ico__answers_an_icon_to_anyone() -> None:
    # Browsers ask for /favicon.ico by themselves (before or without reading the page).
    response = Client().get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] in {"image/x-icon", "image/vnd.microsoft.icon"}
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO header (one image follows)


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
    assert '<script src="/api/docs/?script="></script>' in html
    assert "/api/schema/" in client.get("/api/docs/?script=").content.decode()


# --------------------------------------------------------------------------- security headers


@pytest.mark.parametrize("url", ["/", "/agents/", "/audit/", "/api/docs/", "/api/redoc/"])
def test_pages__content_security_policy__scripts_from_this_origin_only(
    client: Client, url: str
) -> None:
    response = client.get(url)
    policy = dict(
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no CDN
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.parametrize("url", ["/", "/agents/", "/audit/", "/flags/", "/runtimes/", "/login/"])
def test_pages__no_inline_script_nor_event_handler_attribute(client: Client, url: str) -> None:
    html = client.get(url).content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert re.findall(r"\son[a-z]+\s*=", html) == []
    assert "javascript:" not in html


def _templates() -> list[Path]:
    root = Path(__file__).resolve().parents[2]
    return sorted([*root.glob("templates/**/*.html"), *root.glob("apps/*/templates/**/*.html")])


@pytest.mark.parametrize("template", _templates(), ids=lambda p: p.name)
def test_templates__no_inline_script_nor_event_handler_attribute(template: Path) -> None:
    # The policy would block them in the browser; this names the template before anyone runs it.
    source = template.read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", source) == []
    assert re.findall(r"\son[a-z]+\s*=", source) == []
    assert "javascript:" not in source
