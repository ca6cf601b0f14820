"""Every error under /api/ is JSON in the one error shape, never an HTML page: unknown paths,
refused methods, oversized bodies and unhandled failures, on the fast path and in Django,
through the real ASGI server."""

from __future__ import annotations

import pytest
import requests
from rest_framework.test import APIClient

from apps.core.fastpath import Route, TokenScope, register
from apps.core.fastpath.registry import registry
from apps.core.roles import Role
from apps.flags.api.client_views import ClientRegisterView
from apps.tenancy.models import Tenant

from ..factories import AgentFactory, make_user
from ..flags.conftest import make_flag, make_token

UNKNOWN_PATHS = [
    "/api/",
    "/api/unknown",
    "/api/v1/",
    "/api/v1/no-such-thing/",
    "/api/v1/tenants/999999/",
    "/api/v2/tenants/",
    "/api/runtime/v1/nope",
    "/api/runtime/v2/config",
    "/api/client/",
    "/api/client/nope",
    "/api/client/features-all",
    "/api/client/features/no-such-flag",
]
# (method, path): a method the endpoint does not take
WRONG_METHODS = [
    ("POST", "/api/client/features"),
    ("DELETE", "/api/client/features"),
    ("PUT", "/api/client/features/some-flag"),
    ("POST", "/api/runtime/v1/config"),
    ("PATCH", "/api/runtime/v1/config"),
    ("POST", "/api/client/streaming"),
    ("HEAD", "/api/client/streaming"),
    ("GET", "/api/client/register"),
    ("PUT", "/api/client/metrics"),
    ("GET", "/api/runtime/v1/heartbeat"),
    ("DELETE", "/api/runtime/v1/heartbeat"),
    ("PROPFIND", "/api/client/register"),
]


def _assert_json_error(response: requests.Response, status: int | None = None) -> None:
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code >= 400, where
    if status is not None:
        assert response.status_code == status, (where, response.status_code, response.text[:200])
    assert response.headers["Content-Type"].startswith("application/json"), where
    if response.request.method != "HEAD":
        body = response.json()
        assert set(body) == {"detail", "errors"}, where
        assert isinstance(body["detail"], str) and body["detail"], where


def test_api__unknown_paths__404_json(asgi_server: str, tenant: Tenant) -> None:
    token = make_token(tenant.environments.get(slug="development"))
    for path in UNKNOWN_PATHS:
        for headers in ({}, {"Authorization": token}):
            response = requests.get(asgi_server + path, headers=headers, timeout=10)
            # a call may be refused (401/403: no or the wrong kind of credential) before the
            # lookup; never an HTML page
            _assert_json_error(response)
            assert response.status_code in (401, 403, 404), path
    for path in UNKNOWN_PATHS[:4] + UNKNOWN_PATHS[6:]:  # outside the operator API
        response = requests.get(asgi_server + path, headers={"Authorization": token}, timeout=10)
        _assert_json_error(response, 404)


def test_api__wrong_methods__405_json_with_allow(asgi_server: str, tenant: Tenant) -> None:
    token = make_token(tenant.environments.get(slug="development"))
    for method, path in WRONG_METHODS:
        response = requests.request(
            method, asgi_server + path, headers={"Authorization": token}, timeout=10
        )
        _assert_json_error(response, 405)
        assert method not in response.headers["Allow"], (method, path)


def test_api__oversized_body__413_json(asgi_server: str, tenant: Tenant, settings) -> None:  # type: ignore[no-untyped-def]
    settings.API_MAX_BODY_BYTES = 1000
    token = make_token(tenant.environments.get(slug="development"))
    big = b'{"appName": "' + b"x" * 5000 + b'"}'
    for path in ["/api/client/metrics", "/api/client/register", "/api/v1/auth/token/"]:
        response = requests.post(
            asgi_server + path,
            data=big,
            headers={"Authorization": token, "Content-Type": "application/json"},
            timeout=10,
        )
        _assert_json_error(response, 413)


def test_api__django_view_fails__500_json(
    asgi_server: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self, request):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    monkeypatch.setattr(ClientRegisterView, "post", broken)
    token = make_token(tenant.environments.get(slug="development"))
    response = requests.post(
        asgi_server + "/api/client/register",
        json={"appName": "a", "instanceId": "i"},
        headers={"Authorization": token},
        timeout=10,
    )
    _assert_json_error(response, 500)
    assert "boom" not in response.text


def _broken_build(scope: TokenScope, variant: str) -> tuple[int, bytes]:
    raise RuntimeError("boom")


def test_api__fast_path_builder_fails__500_json(asgi_server: str, tenant: Tenant) -> None:
    path = "/api/test-only/broken"
    register(Route(path=path, kind="test-broken", build=_broken_build))
    try:
        token = make_token(tenant.environments.get(slug="development"))
        response = requests.get(asgi_server + path, headers={"Authorization": token}, timeout=10)
    finally:
        registry.routes.pop(path, None)
    _assert_json_error(response, 500)
    assert "boom" not in response.text


def test_pages_outside_api__keep_html_errors(asgi_server: str) -> None:
    response = requests.get(asgi_server + "/no-such-page/", timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")


# What a browser sends, and other Accept headers a client may send: the answer to an error
# is JSON whatever the client prefers (the API has no HTML representation).
ACCEPTS = ["text/html", "text/html,application/xhtml+xml,*/*;q=0.8", "*/*", "application/xml"]


def test_api__error_with_any_accept_header__json_never_html(tenant: Tenant) -> None:
    flag = make_flag(tenant.environments.get(slug="development"))
    signed_in = APIClient(raise_request_exception=False)
    signed_in.force_login(make_user(Role.ADMIN, tenant))
    anonymous = APIClient(raise_request_exception=False)
    token = make_token(tenant.environments.get(slug="development"))
    cases = [
        (signed_in, "get", "/api/v1/flags/999999/", 404),
        (signed_in, "delete", "/api/v1/me/", 405),
        (signed_in, "post", "/api/v1/tenants/", 400),
        (signed_in, "patch", f"/api/v1/flags/{flag.pk}/", 400),
        (signed_in, "post", "/api/docs/", 405),
        (signed_in, "post", "/api/schema/", 405),
        (signed_in, "put", "/api/runtime/v1/keys", 405),
        (anonymous, "get", "/api/v1/tenants/", 401),
        (anonymous, "patch", f"/api/v1/flags/{flag.pk}/", 401),
        (anonymous, "put", "/api/client/register", 401),
        (anonymous, "post", "/api/client/metrics", 401),
    ]
    for client, method, path, status in cases:
        for accept in ACCEPTS:
            headers = {"HTTP_ACCEPT": accept}
            if path.startswith("/api/client/") and client is signed_in:
                headers["HTTP_AUTHORIZATION"] = token
            body = {"enabled": "maybe"} if method == "patch" else {}
            response = getattr(client, method)(path, body, format="json", **headers)
            where = (method, path, accept, response.status_code, response.content[:120])
            if accept == "application/xml" and response.status_code == 406:
                pass  # the client accepts nothing the API writes: 406 is the right answer
            else:
                assert response.status_code == status, where
            assert response["Content-Type"].startswith("application/json"), where
            assert set(response.json()) >= {"detail", "errors"}, where


def test_api__options__answers_json_never_500(tenant: Tenant) -> None:
    client = APIClient(raise_request_exception=False)
    client.force_login(make_user(Role.ADMIN, tenant))
    agent = AgentFactory(tenant=tenant)
    flag = make_flag(tenant.environments.get(slug="development"))
    paths = [
        "/api/v1/tenants/",
        f"/api/v1/tenants/{tenant.pk}/",
        "/api/v1/flags/",
        f"/api/v1/flags/{flag.pk}/",
        "/api/v1/segments/",
        "/api/v1/kill-switches/",
        "/api/v1/users/",
        "/api/v1/runtime-tokens/",
        "/api/v1/me/",
        "/api/v1/auth/token/",
        f"/api/v1/agents/{agent.pk}/",
    ]
    for path in paths:
        for accept in ACCEPTS[:3]:
            response = client.options(path, HTTP_ACCEPT=accept)
            where = (path, accept, response.status_code, response.content[:120])
            assert response.status_code in (200, 404), where
            assert response["Content-Type"].startswith("application/json"), where
            assert "Allow" in response or response.status_code == 404, where


@pytest.mark.parametrize("debug", [False, True])
def test_api__missing_trailing_slash__308_keeps_method_and_body_never_500(
    tenant: Tenant, settings, debug: bool
) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = debug
    client = APIClient(raise_request_exception=False)
    client.force_login(make_user(Role.ADMIN, tenant))
    flag = make_flag(tenant.environments.get(slug="development"))
    for method, path in [
        ("post", "/api/v1/tenants"),
        ("post", "/api/v1/auth/token"),
        ("post", "/api/v1/flags/import"),
        ("patch", f"/api/v1/flags/{flag.pk}"),
        ("put", f"/api/v1/tenants/{tenant.pk}"),
        ("delete", f"/api/v1/flags/{flag.pk}"),
        ("get", "/api/v1/tenants"),
    ]:
        response = getattr(client, method)(path, {"name": "x"}, format="json")
        where = (method, path, response.status_code, response.content[:100])
        # a 301/302 makes clients resend a POST as a GET, dropping its body: 308 does not
        assert response.status_code == 308, where
        assert response["Location"].split("?")[0].endswith(path + "/"), where


@pytest.mark.parametrize(
    ("detail", "flat"),
    [
        ({"bucket": {"start": ["bad"]}}, {"bucket.start": ["bad"]}),
        ({"bucket": {"non_field_errors": ["not an object"]}}, {"bucket": ["not an object"]}),
        (
            {"strategies": [{}, {"constraints": {"0": {"values": ["x"]}}}]},
            {"strategies[1].constraints[0].values": ["x"]},
        ),
        ({"names": {"2": ["too long"]}}, {"names[2]": ["too long"]}),
        (["whole body wrong"], {"non_field_errors": ["whole body wrong"]}),
        ({"": ["empty pointer"]}, {"": ["empty pointer"]}),
    ],
)
def test_field_errors__nested_serializers__one_flat_level_named_by_path(
    detail: object, flat: dict[str, list[str]]
) -> None:
    # The documented error shape is {"detail", "errors": {field: [message]}}: nested
    # serializers' errors must not break it (schemathesis found the nested dicts).
    from apps.core.api import _as_field_errors

    assert _as_field_errors(detail) == flat
