"""The fast path's defences: security headers on every answer, HTTPS as the production
profile asks, a bounded token cache, and tokens of an archived tenant, environment or agent
refused at once (in flight too), here and by Django's runtime endpoints."""

from __future__ import annotations

import asyncio
import threading

import pytest
import requests
from rest_framework.test import APIClient

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.core.fastpath.registry import TokenScope
from apps.core.fastpath.state import TokenCache
from apps.tenancy.models import Agent, Environment, Tenant
from apps.tenancy.services import agent_archive, environment_archive, tenant_archive

from ..factories import AgentFactory

ACTOR = SystemActor("test")
SPEC = {"Unleash-Client-Spec": "5.0.0"}
FEATURES = "/api/client/features"
CONFIG = "/api/runtime/v1/config"


@pytest.fixture
def development(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="development")


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


@pytest.fixture
def token(tenant: Tenant, development: Environment, agent: Agent) -> str:
    return runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=development, agent=agent, name="fleet"
    )[1]


def _get(base: str, path: str, token: str = "", **headers: str) -> requests.Response:
    return requests.get(
        base + path, headers={"Authorization": token, **SPEC, **headers}, timeout=20
    )


def _assert_secure(response: requests.Response) -> None:
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    assert response.headers["X-Content-Type-Options"] == "nosniff", where
    assert response.headers["Referrer-Policy"] == "no-referrer", where
    assert response.headers["X-Frame-Options"] == "DENY", where
    assert "default-src 'none'" in response.headers["Content-Security-Policy"], where
    assert response.headers["Cache-Control"] in ("no-cache", "no-store"), where


def test_fastpath__every_kind_of_answer__sends_security_headers(
    asgi_server: str, token: str
) -> None:
    ok = _get(asgi_server, FEATURES, token)
    assert ok.status_code == 200
    assert "Authorization" in ok.headers["Vary"] and "Unleash-Client-Spec" in ok.headers["Vary"]
    answers = [
        ok,
        _get(asgi_server, FEATURES, token, **{"If-None-Match": ok.headers["ETag"]}),
        _get(asgi_server, CONFIG, token),
        _get(asgi_server, FEATURES),
        _get(asgi_server, FEATURES + "/nope", token),
        _get(asgi_server, CONFIG + "?wait=abc", token),
        requests.post(asgi_server + CONFIG, headers={"Authorization": token}, timeout=10),
    ]
    head = requests.head(
        asgi_server + FEATURES, headers={"Authorization": token, **SPEC}, timeout=10
    )
    assert head.status_code == 200 and head.content == b""
    # what the GET sent (gzip-coded, as requests asks): tests/fastpath/test_compression.py
    assert head.headers["Content-Length"] == ok.headers["Content-Length"]
    assert head.headers["Content-Encoding"] == ok.headers["Content-Encoding"] == "gzip"
    answers.append(head)
    assert [a.status_code for a in answers] == [200, 304, 200, 401, 404, 400, 405, 200]
    stream = requests.get(
        asgi_server + "/api/client/streaming",
        headers={"Authorization": token, **SPEC},
        stream=True,
        timeout=10,
    )
    answers.append(stream)
    stream.close()
    not_modified = answers.pop(1)
    for response in answers:
        _assert_secure(response)
    # A 304 updates the stored 200 (which has them) with only its validators (RFC 9110
    # 15.4.5): none of the security headers, and what it does carry is the 200's.
    assert "Content-Security-Policy" not in not_modified.headers
    assert not_modified.headers["ETag"] == ok.headers["ETag"]
    assert not_modified.headers["Vary"] == ok.headers["Vary"]
    for response in answers[2:6]:
        assert response.headers["Cache-Control"] == "no-store"


def test_fastpath__ssl_redirect__plain_http_redirected_https_gets_hsts(
    asgi_server: str,
    token: str,
    settings,  # type: ignore[no-untyped-def]
) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600

    for path in [FEATURES + "?namePrefix=a", CONFIG, "/api/client/streaming"]:
        plain = requests.get(
            asgi_server + path, headers={"Authorization": token}, allow_redirects=False, timeout=10
        )
        assert plain.status_code == 301, path
        assert plain.headers["Location"].startswith("https://"), path
        assert plain.headers["Location"].endswith(path), path
        assert plain.json()["detail"]
        assert "Strict-Transport-Security" not in plain.headers

    # The TLS-terminating proxy (trusted by uvicorn's forwarded-allow-ips) says https.
    proxied = _get(asgi_server, FEATURES, token, **{"X-Forwarded-Proto": "https"})
    assert proxied.status_code == 200
    assert proxied.headers["Strict-Transport-Security"].startswith("max-age=3600")


def test_token_cache__made_up_tokens__bounded_and_never_evict_valid_ones() -> None:
    calls: list[str] = []
    valid = TokenScope(1, 1, 1, None)

    def lookup(raw: str) -> tuple[TokenScope, float | None] | None:
        calls.append(raw)
        return (valid, None) if raw.startswith("good") else None

    cache = TokenCache(lookup, size=10, negative_size=50)

    async def run() -> None:
        for n in range(10):
            assert await cache.resolve(f"h-good{n}", f"good{n}") == valid
        for n in range(2_000):
            assert await cache.resolve(f"h-bad{n}", f"bad{n}") is None
            assert len(cache) <= 60
        calls.clear()
        for n in range(10):  # still cached: no lookup
            assert await cache.resolve(f"h-good{n}", f"good{n}") == valid
        assert calls == []
        assert await cache.resolve("h-bad1999", "bad1999") is None  # a recent refusal: cached
        assert calls == []
        for n in range(10, 30):  # more valid tokens than fit: the least recently used go
            await cache.resolve(f"h-good{n}", f"good{n}")
        assert len(cache) <= 60

    asyncio.run(run())


def test_token_cache__a_fleet_missing_together__one_lookup_per_token() -> None:
    # A fleet sharing one token misses together when its entry expires: one query, not one
    # per waiting runtime (they would queue on the thread pool in front of every answer).
    import threading

    calls: list[str] = []
    release = threading.Event()
    valid = TokenScope(1, 1, 1, None)

    def lookup(raw: str) -> tuple[TokenScope, float | None] | None:
        calls.append(raw)
        release.wait(5)
        return (valid, None) if raw == "good" else None

    cache = TokenCache(lookup)

    async def run() -> None:
        good = [asyncio.ensure_future(cache.resolve("h-good", "good")) for _ in range(200)]
        bad = [asyncio.ensure_future(cache.resolve("h-bad", "bad")) for _ in range(50)]
        await asyncio.sleep(0.05)
        release.set()
        assert await asyncio.gather(*good) == [valid] * 200
        assert await asyncio.gather(*bad) == [None] * 50

    asyncio.run(run())
    assert sorted(calls) == ["bad", "good"]


@pytest.mark.parametrize("forget", ["token", "scope"])
def test_token_cache__revoked_while_looked_up__the_old_answer_not_cached(forget: str) -> None:
    # A look-up that read the token before its revocation (or its scope's archiving) landed
    # after the fast path forgot it: caching that answer would make the revoked token valid
    # again for TOKEN_TTL_S. It is looked up again instead, by everyone waiting on it.
    import threading

    valid = TokenScope(token_id=1, tenant_id=1, environment_id=1, agent_id=None)
    calls: list[str] = []
    release = threading.Event()

    def lookup(raw: str) -> tuple[TokenScope, float | None] | None:
        calls.append(raw)
        if len(calls) == 1:
            release.wait(5)
            return (valid, None)  # what the database said before the revocation
        return None  # revoked

    cache = TokenCache(lookup)

    async def run() -> None:
        waiting = [asyncio.ensure_future(cache.resolve("h", "raw")) for _ in range(20)]
        await asyncio.sleep(0.05)  # the first look-up is in flight
        if forget == "token":
            cache.forget("h")
        else:
            cache.forget_scope(kind="environment", object_id=1)
        release.set()
        assert await asyncio.gather(*waiting) == [None] * 20
        assert cache.entry_of("h") is None

    asyncio.run(run())
    assert calls == ["raw", "raw"]  # once before, once after: not once per waiting request


def test_fastpath__made_up_tokens__401_without_growing_anything(
    asgi_server: str, token: str
) -> None:
    for made_up in ["nope", "cprt_" + "x" * 40, "Bearer cprt_y", "cprt_" + "z" * 5000]:
        assert _get(asgi_server, FEATURES, made_up).status_code == 401
    assert _get(asgi_server, FEATURES, token).status_code == 200


ARCHIVE = {
    "tenant": lambda t, e, a: tenant_archive(actor=ACTOR, tenant=t, reason="offboarded"),
    "environment": lambda t, e, a: environment_archive(actor=ACTOR, environment=e, reason="gone"),
    "agent": lambda t, e, a: agent_archive(actor=ACTOR, agent=a, reason="retired"),
}


@pytest.mark.parametrize("kind", sorted(ARCHIVE))
def test_token_of_archived_scope__refused_at_once_everywhere(
    asgi_server: str,
    token: str,
    tenant: Tenant,
    development: Environment,
    agent: Agent,
    kind: str,
) -> None:
    tag = _get(asgi_server, CONFIG, token).headers["ETag"]
    assert _get(asgi_server, FEATURES, token).status_code == 200  # cached as valid now
    result: dict[str, requests.Response] = {}
    poller = threading.Thread(
        target=lambda: result.setdefault(
            "r", _get(asgi_server, CONFIG + "?wait=30", token, **{"If-None-Match": tag})
        )
    )
    poller.start()
    threading.Event().wait(0.5)  # let the poll park

    ARCHIVE[kind](tenant, development, agent)
    poller.join(timeout=25)

    assert result["r"].status_code == 401  # the parked long-poll ended at once
    for path in [FEATURES, CONFIG, FEATURES + "/x"]:
        assert _get(asgi_server, path, token).status_code == 401, path
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=token)
    heartbeat = client.post(
        "/api/runtime/v1/heartbeat",
        {"instance_id": "pod-1", "status": "ack", "revision": 1},
        format="json",
    )
    register = client.post(
        "/api/client/register",
        {
            "appName": "a",
            "instanceId": "i",
            "sdkVersion": "x:1",
            "strategies": [],
            "interval": 1000,
            "started": "2026-01-01T00:00:00Z",
        },
        format="json",
    )
    assert heartbeat.status_code == 401
    assert register.status_code == 401
