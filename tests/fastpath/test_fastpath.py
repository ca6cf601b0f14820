"""The fast path's protocol, through a real uvicorn server: token check, ETag/304, long-poll
wake-up on a revision bump, and revocation reaching the token cache at once."""

from __future__ import annotations

import json
import threading

import pytest
import requests
from django.db import transaction

from apps.accounts.runtime_tokens import runtime_token_create, runtime_token_revoke
from apps.audit.services import SystemActor
from apps.core.fastpath import Route, TokenScope, register
from apps.core.fastpath.registry import registry
from apps.tenancy.models import Environment, Tenant
from apps.tenancy.services import environment_revision_bump

ACTOR = SystemActor("test")
PATH = "/api/test-only/snapshot"


def _build(scope: TokenScope, variant: str, key: str) -> tuple[int, bytes]:
    environment = Environment.objects.get(pk=scope.environment_id)
    return environment.revision, json.dumps(
        {"environment": environment.slug, "revision": environment.revision}
    ).encode()


@pytest.fixture
def route():  # type: ignore[no-untyped-def]
    register(Route(path=PATH, kind="test-snapshot", build=_build, max_wait_s=10))
    yield PATH
    registry.remove(PATH)


@pytest.fixture
def token(tenant: Tenant) -> str:
    _, raw = runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        name="test runtime",
    )
    return raw


def _bump(tenant: Tenant) -> None:
    with transaction.atomic():
        environment_revision_bump(environment_id=tenant.environments.get(slug="production").pk)


def test_fastpath__no_or_unknown_token__401(asgi_server: str, route: str, token: str) -> None:
    assert requests.get(asgi_server + route, timeout=5).status_code == 401
    assert (
        requests.get(
            asgi_server + route, headers={"Authorization": "cprt_nope"}, timeout=5
        ).status_code
        == 401
    )


def test_fastpath__etag__304_until_revision_changes(
    asgi_server: str, route: str, token: str, tenant: Tenant
) -> None:
    first = requests.get(asgi_server + route, headers={"Authorization": token}, timeout=5)
    assert first.status_code == 200
    assert first.json() == {"environment": "production", "revision": 1}
    etag = first.headers["ETag"]
    again = requests.get(
        asgi_server + route,
        headers={"Authorization": f"Bearer {token}", "If-None-Match": etag},
        timeout=5,
    )
    assert again.status_code == 304 and again.content == b""

    _bump(tenant)

    changed = requests.get(
        asgi_server + route, headers={"Authorization": token, "If-None-Match": etag}, timeout=5
    )
    assert changed.status_code == 200
    assert changed.json()["revision"] == 2
    assert changed.headers["ETag"] != etag


def test_fastpath_long_poll__revision_bump__answers_with_new_snapshot(
    asgi_server: str, route: str, token: str, tenant: Tenant
) -> None:
    etag = requests.get(asgi_server + route, headers={"Authorization": token}, timeout=5).headers[
        "ETag"
    ]
    result: dict[str, requests.Response] = {}
    poller = threading.Thread(
        target=lambda: result.setdefault(
            "r",
            requests.get(
                asgi_server + route + "?wait=10",
                headers={"Authorization": token, "If-None-Match": etag},
                timeout=15,
            ),
        )
    )
    poller.start()
    threading.Event().wait(0.5)  # let the poll park before the change

    _bump(tenant)
    poller.join(timeout=15)

    assert result["r"].status_code == 200  # a timeout would have been a 304
    assert result["r"].json()["revision"] == 2


def test_fastpath_long_poll__no_change__304_at_timeout(
    asgi_server: str, route: str, token: str
) -> None:
    etag = requests.get(asgi_server + route, headers={"Authorization": token}, timeout=5).headers[
        "ETag"
    ]
    response = requests.get(
        asgi_server + route + "?wait=0.5",
        headers={"Authorization": token, "If-None-Match": etag},
        timeout=5,
    )
    assert response.status_code == 304


def test_fastpath__bad_wait__400_with_field_error(asgi_server: str, route: str, token: str) -> None:
    response = requests.get(
        asgi_server + route + "?wait=600", headers={"Authorization": token}, timeout=5
    )
    assert response.status_code == 400
    assert "wait" in response.json()["errors"]


def test_fastpath__revoked_token__refused_on_next_call(
    asgi_server: str, route: str, token: str
) -> None:
    assert (
        requests.get(asgi_server + route, headers={"Authorization": token}, timeout=5).status_code
        == 200
    )
    from apps.accounts.models import RuntimeToken, hash_runtime_token

    runtime_token_revoke(
        actor=ACTOR,
        token=RuntimeToken.objects.get(token_hash=hash_runtime_token(token)),
        reason="compromised",
    )

    assert (
        requests.get(asgi_server + route, headers={"Authorization": token}, timeout=5).status_code
        == 401
    )


def test_fastpath__other_paths__reach_django(asgi_server: str) -> None:
    assert requests.get(asgi_server + "/healthz", timeout=5).json() == {"status": "ok"}


@pytest.fixture
def redis_url() -> str:
    import os

    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis is not available (TEST_REDIS_URL unset); .ci/run requires it")
    return url


def test_fastpath_long_poll__woken_by_redis_pubsub_from_another_process(
    redis_url: str, route: str, tenant: Tenant, settings, transactional_db
) -> None:  # type: ignore[no-untyped-def]
    """A change committed by another process (a worker, another web node) reaches this one's
    long-polls through Redis alone: the revision poll is pushed out of the way."""
    import redis

    from apps.core import events

    settings.REDIS_URL = redis_url
    settings.FASTPATH_POLL_INTERVAL_S = 600
    events.reset_redis_client()
    production = tenant.environments.get(slug="production")
    _, raw = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=production, name="redis runtime"
    )
    import threading as _t

    import uvicorn

    from apps.core.fastpath.app import FastPath
    from controlplane.asgi import django_application

    from ..conftest import _free_port

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            FastPath(django_application),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = _t.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            _t.Event().wait(0.02)
        base = f"http://127.0.0.1:{port}"
        first = requests.get(base + route, headers={"Authorization": raw}, timeout=5)
        assert first.status_code == 200, first.content
        etag = first.headers["ETag"]
        _t.Event().wait(0.5)  # the subscriber connects to Redis
        result: dict[str, requests.Response] = {}
        poller = _t.Thread(
            target=lambda: result.setdefault(
                "r",
                requests.get(
                    base + route + "?wait=8",
                    headers={"Authorization": raw, "If-None-Match": etag},
                    timeout=15,
                ),
            )
        )
        poller.start()
        _t.Event().wait(0.3)

        # Another process's commit: the row changes without any in-process notification ...
        Environment.objects.filter(pk=production.pk).update(revision=5)
        # ... and only the Redis message announces it.
        message = {
            "topic": events.ENVIRONMENT_REVISION,
            "key": str(production.pk),
            "payload": {"environment_id": production.pk, "revision": 5},
        }
        redis.Redis.from_url(redis_url).publish(events.channel(redis_url), json.dumps(message))
        poller.join(timeout=15)

        assert result["r"].status_code == 200
        assert result["r"].json()["revision"] == 5
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        events.reset_redis_client()
