"""The Unleash client API's narrower reads: ``GET /api/client/features/{name}``, ``namePrefix``
and ``project`` (repeatable), checked with HTTP and with the real Python SDK; ``meta.etag``
is the HTTP ``ETag``."""

from __future__ import annotations

import requests
from UnleashClient import UnleashClient

from apps.flags.services import flags_import
from apps.tenancy.models import Environment, Tenant

from ..conformance.conftest import wait_until
from .conftest import SYSTEM, make_token

SPEC = {"Unleash-Client-Spec": "5.0.0"}


def _feature(name: str, project: str = "default", enabled: bool = True) -> dict:
    return {
        "name": name,
        "type": "release",
        "enabled": enabled,
        "project": project,
        "strategies": [{"name": "default", "parameters": {}, "constraints": []}],
        "variants": [],
    }


def _seed(environment: Environment) -> None:
    flags_import(
        actor=SYSTEM,
        environment=environment,
        payload={
            "version": 2,
            "features": [
                _feature("app.checkout", "shop"),
                _feature("app.search", "search"),
                _feature("billing.invoices", "shop", enabled=False),
                _feature("appendix", "default"),
            ],
        },
        mode="merge",
        reason="test setup",
    )


def _get(base: str, path: str, token: str) -> requests.Response:
    return requests.get(base + path, headers={"Authorization": token, **SPEC}, timeout=10)


def _names(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(f["name"] for f in response.json()["features"])


def test_client_feature__by_name__unleash_feature_object(asgi_server: str, tenant: Tenant) -> None:
    development = tenant.environments.get(slug="development")
    _seed(development)
    token = make_token(development)

    for name, enabled in [("app.checkout", True), ("billing.invoices", False), ("appendix", True)]:
        response = _get(asgi_server, f"/api/client/features/{name}", token)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "application/json"
        feature = response.json()
        assert feature["name"] == name and feature["enabled"] is enabled
        assert {"type", "strategies", "variants", "project"} <= set(feature)


def test_client_feature__unknown_or_foreign_name__404_json(
    asgi_server: str, tenant: Tenant, other_tenant: Tenant
) -> None:
    development = tenant.environments.get(slug="development")
    _seed(development)
    foreign = other_tenant.environments.get()
    _seed(foreign)
    flags_import(
        actor=SYSTEM,
        environment=foreign,
        payload={"version": 2, "features": [_feature("globex.secret")]},
        mode="merge",
        reason="test setup",
    )
    token = make_token(development)

    for path in ["globex.secret", "nope", "app.", "", "app.checkout/extra", "%00"]:
        response = _get(asgi_server, f"/api/client/features/{path}", token)
        assert response.status_code == 404, path
        assert response.headers["Content-Type"] == "application/json"
        assert set(response.json()) == {"detail", "errors"}
    assert _get(asgi_server, "/api/client/features/app.checkout", "cprt_forged").status_code == 401


def test_client_features__name_prefix_and_project__filtered_as_unleash_filters(
    asgi_server: str, tenant: Tenant
) -> None:
    development = tenant.environments.get(slug="development")
    _seed(development)
    token = make_token(development)
    path = "/api/client/features"

    assert _names(_get(asgi_server, path, token)) == [
        "app.checkout",
        "app.search",
        "appendix",
        "billing.invoices",
    ]
    assert _names(_get(asgi_server, path + "?namePrefix=app.", token)) == [
        "app.checkout",
        "app.search",
    ]
    assert _names(_get(asgi_server, path + "?namePrefix=app", token)) == [
        "app.checkout",
        "app.search",
        "appendix",
    ]
    assert _names(_get(asgi_server, path + "?project=shop", token)) == [
        "app.checkout",
        "billing.invoices",
    ]
    assert _names(_get(asgi_server, path + "?project=shop&project=search", token)) == [
        "app.checkout",
        "app.search",
        "billing.invoices",
    ]
    assert _names(_get(asgi_server, path + "?project=shop&namePrefix=app.", token)) == [
        "app.checkout"
    ]
    assert _names(_get(asgi_server, path + "?project=unknown", token)) == []
    assert _names(_get(asgi_server, path + "?namePrefix=zzz", token)) == []


def test_client_features__meta_etag__equals_the_etag_header_and_gives_304(
    asgi_server: str, tenant: Tenant
) -> None:
    development = tenant.environments.get(slug="development")
    _seed(development)
    token = make_token(development)

    tags = set()
    for query in ["", "?namePrefix=app.", "?project=shop"]:
        # The plain form's tag is meta.etag; the gzip form's is its own (RFC 9110 8.8.3).
        response = requests.get(
            asgi_server + "/api/client/features" + query,
            headers={"Authorization": token, **SPEC, "Accept-Encoding": "identity"},
            timeout=10,
        )
        assert "Content-Encoding" not in response.headers
        assert response.json()["meta"]["etag"] == response.headers["ETag"]
        tags.add(response.headers["ETag"])
        gzipped = _get(asgi_server, "/api/client/features" + query, token)
        assert gzipped.headers["Content-Encoding"] == "gzip"
        assert gzipped.headers["ETag"] == response.headers["ETag"][:-1] + '-gzip"'
        again = requests.get(
            asgi_server + "/api/client/features" + query,
            headers={
                "Authorization": token,
                **SPEC,
                "If-None-Match": response.json()["meta"]["etag"],
            },
            timeout=10,
        )
        assert again.status_code == 304
    assert len(tags) == 3  # each view is its own representation


def test_sdk__project_name__sees_only_that_projects_flags(
    asgi_server: str,
    tenant: Tenant,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    development = tenant.environments.get(slug="development")
    _seed(development)
    client = UnleashClient(
        url=asgi_server + "/api",
        app_name="project-test",
        refresh_interval=1,
        disable_metrics=True,
        disable_registration=True,
        custom_headers={"Authorization": make_token(development)},
        cache_directory=str(tmp_path / "cache"),
        project_name="search",
    )
    client.initialize_client()
    try:
        assert wait_until(lambda: client.is_enabled("app.search"))
        assert not client.is_enabled("app.checkout")  # another project's flag is not served
        assert client.feature_definitions().keys() == {"app.search"}
    finally:
        client.destroy()
