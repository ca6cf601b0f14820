"""A broker or cache outage never turns a committed change into a 500 (issue 9, item 4).

Redis "down" is a closed port; Redis "hung" is a local TCP server that accepts and never
answers. Changes go through real requests on a real (transactional) database, so their
after-commit hooks really run inside the request."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.runtime_tokens import runtime_token_create, runtime_token_revoke
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.core import events
from apps.flags.models import KillSwitch
from apps.rollouts.models import Deployment
from apps.runtimes.models import RevisionLog, RuntimeInstance
from apps.runtimes.services import runtime_side_effects_resend
from apps.tenancy.models import Agent, Tenant
from controlplane.celery import app as celery_app

from ..conftest import api_as
from ..factories import AgentFactory
from ..fake_servers import closed_port_url, hung_server

ACTOR = SystemActor("test")
DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hung_url() -> Iterator[str]:
    """A server that accepts connections and never answers (a hung Redis)."""
    with hung_server() as (url, _held):
        yield url


@pytest.fixture
def outage(request: pytest.FixtureRequest) -> str:
    if request.param == "down":
        return closed_port_url()
    return str(request.getfixturevalue("hung_url"))


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis is not available (TEST_REDIS_URL unset); .ci/run requires it")
    return url


def _received(pubsub: Any, expected: dict[str, Any]) -> bool:
    """Whether ``expected`` arrives on the channel (other messages on it are skipped: Redis
    channels are shared by every database, so another process may publish meanwhile)."""
    for _ in range(50):
        message = pubsub.get_message(timeout=0.2)
        if message is not None and json.loads(message["data"]) == expected:
            return True
    return False


def _use_redis(settings: Any, url: str) -> None:
    """Point pub/sub and the Celery broker at ``url`` (with the production socket options).
    The transport follows the URL's scheme, as with Redis in production settings: without a
    Redis URL at start the test settings chose the embedded default's filesystem transport
    (``broker_transport``), which would otherwise win over the URL."""
    settings.REDIS_URL = url
    events.reset_redis_client()
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport = None
    celery_app.conf.broker_transport_options = settings.REDIS_BROKER_TRANSPORT_OPTIONS
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def restore_broker(settings: Any) -> Iterator[None]:
    conf = celery_app.conf
    broker, transport, options = (
        conf.broker_url,
        conf.broker_transport,
        conf.broker_transport_options,
    )
    yield
    events.reset_redis_client()
    conf.broker_url, conf.broker_transport, conf.broker_transport_options = (
        broker,
        transport,
        options,
    )
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


TOPICS = (events.ENVIRONMENT_REVISION, events.RUNTIME_TOKEN_REVOKED, events.SCOPE_ARCHIVED)


def _revision(environment_id: int, revision: int) -> dict[str, Any]:
    return {
        "topic": events.ENVIRONMENT_REVISION,
        "key": str(environment_id),
        "payload": {"environment_id": environment_id, "revision": revision},
    }


def _revoked(token_hash: str) -> dict[str, Any]:
    return {"topic": events.RUNTIME_TOKEN_REVOKED, "key": token_hash, "payload": {}}


def _archived(kind: str, object_id: int, published: list[dict[str, Any]]) -> bool:
    """Was the archive of ``kind`` ``object_id`` published (its payload names it too)?"""
    return any(
        event["topic"] == events.SCOPE_ARCHIVED
        and event["key"] == f"{kind}:{object_id}"
        and (event["payload"]["kind"], event["payload"]["id"]) == (kind, object_id)
        for event in published
    )


@pytest.fixture
def published() -> Iterator[list[dict[str, Any]]]:
    """What the in-process publish delivered to this process's everywhere subscribers (the
    embedded fast path's side of the event seam), as channel messages."""
    messages: list[dict[str, Any]] = []

    def heard(event: events.Event) -> None:
        messages.append(event.as_message())

    for topic in TOPICS:
        events.subscribe(topic, heard, everywhere=True)
    yield messages
    for topic in TOPICS:
        events.unsubscribe(topic, heard, everywhere=True)


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


@pytest.fixture
def listening_runtime(tenant: Tenant) -> RuntimeInstance:
    """A runtime of production with a push URL, so every revision wants a webhook task."""
    production = tenant.environments.get(slug="production")
    token, _ = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=production, name="fleet"
    )
    return RuntimeInstance.objects.create(
        tenant=tenant,
        environment=production,
        token=token,
        instance_id="pod-1",
        last_seen_at=timezone.now(),
        push_url="https://runtime.example.com/push",
    )


def _engage(client: APIClient, agent: Agent) -> Any:
    return client.post(
        "/api/v1/kill-switches/",
        {
            "kind": "agent_mode",
            "scope": "agent",
            "agent": agent.pk,
            "mode": "read_only",
            "reason": "bad writes",
        },
        format="json",
    )


@pytest.mark.parametrize("outage", ["down", "hung"], indirect=True)
def test_outage__kill_switch_and_deploy__answer_2xx_then_publishes_catch_up(
    outage: str,
    redis_url: str,
    settings: Any,
    restore_broker: None,
    published: list[dict[str, Any]],
    tenant: Tenant,
    agent: Agent,
    operator: Any,
    listening_runtime: RuntimeInstance,
) -> None:
    production = tenant.environments.get(slug="production")
    version = bundle_version_push(
        actor=ACTOR,
        agent=agent,
        message="baseline",
        source=(DEMO / "support-bot-v1.yaml").read_text(),
    ).version
    _use_redis(settings, outage)
    web = APIClient()
    web.force_login(operator)

    # Given Redis (pub/sub and broker) down or hung, when an operator engages and deploys
    engaged = _engage(api_as(operator), agent)
    deployed = web.post(
        f"/agents/{agent.pk}/deploy/",
        # nothing deployed there yet: the page showed sequence 0 (optimistic concurrency)
        {
            "environment": production.pk,
            "version": version.pk,
            "reason": "launch",
            "seen": f"{production.pk}:0",
        },
    )

    # then both answer their 2xx: the changes are committed, and the in-process publish ran
    assert engaged.status_code == 201, engaged.content
    assert deployed.status_code == 302
    assert KillSwitch.objects.count() == 1 and Deployment.objects.count() == 1
    production.refresh_from_db()
    assert _revision(production.pk, production.revision) in published
    pending = RevisionLog.objects.get(environment=production, revision=production.revision)
    assert pending.pushed_at is None  # the webhook task never reached the broker

    # When Redis is back, the beat's resend publishes the current revision and the push.
    _use_redis(settings, redis_url)
    client = redis.Redis.from_url(redis_url)
    client.delete("celery")
    pubsub = client.pubsub()
    pubsub.subscribe(events.channel())
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]

    counts = runtime_side_effects_resend()

    production.refresh_from_db()
    assert _received(pubsub, _revision(production.pk, production.revision))
    assert counts["pushes"] >= 1 and counts["failed"] == 0
    pending.refresh_from_db()
    assert pending.pushed_at is not None
    queued = [json.loads(raw)["headers"]["task"] for raw in client.lrange("celery", 0, -1)]
    assert "apps.runtimes.tasks.push_revision" in queued
    client.delete("celery")
    pubsub.close()


@pytest.mark.parametrize("outage", ["down", "hung"], indirect=True)
def test_outage__token_revoked__local_publish_runs_and_redis_catches_up(
    outage: str,
    redis_url: str,
    settings: Any,
    restore_broker: None,
    published: list[dict[str, Any]],
    listening_runtime: RuntimeInstance,
) -> None:
    _use_redis(settings, outage)
    token = listening_runtime.token
    assert token is not None

    runtime_token_revoke(actor=ACTOR, token=token, reason="leaked")  # commits: hooks run here

    assert _revoked(token.token_hash) in published

    _use_redis(settings, redis_url)
    pubsub = redis.Redis.from_url(redis_url).pubsub()
    pubsub.subscribe(events.channel())
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    runtime_side_effects_resend()
    assert _received(pubsub, _revoked(token.token_hash))
    pubsub.close()


def test_outage__one_listener_raises__the_others_still_run(
    settings: Any, published: list[dict[str, Any]], tenant: Tenant, operator: Any, agent: Agent
) -> None:
    """Isolation, whatever the failure: a subscriber that raises (once or everywhere) costs
    neither the response nor the subscribers after it."""

    def broken(event: events.Event) -> None:
        raise RuntimeError("a subscriber blew up")

    events.subscribe(events.ENVIRONMENT_REVISION, broken)
    events.subscribe(events.ENVIRONMENT_REVISION, broken, everywhere=True)
    try:
        engaged = _engage(api_as(operator), agent)
    finally:
        events.unsubscribe(events.ENVIRONMENT_REVISION, broken)
        events.unsubscribe(events.ENVIRONMENT_REVISION, broken, everywhere=True)

    assert engaged.status_code == 201
    production = tenant.environments.get(slug="production")
    assert _revision(production.pk, production.revision) in published
    assert RevisionLog.objects.filter(
        environment=production, revision=production.revision
    ).exists()  # the once subscriber after the broken one ran too


@pytest.mark.parametrize("outage", ["down", "hung"], indirect=True)
def test_outage__cache_down_or_hung__token_endpoint_and_heartbeat_answer(
    outage: str, settings: Any, tenant: Tenant, operator: Any, listening_runtime: RuntimeInstance
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": outage,
            "OPTIONS": {
                **settings.CACHES["default"].get("OPTIONS", {}),
                "SOCKET_CONNECT_TIMEOUT": settings.REDIS_SOCKET_CONNECT_TIMEOUT_S,
                "SOCKET_TIMEOUT": settings.REDIS_SOCKET_TIMEOUT_S,
                "IGNORE_EXCEPTIONS": True,
            },
        }
    }
    production = tenant.environments.get(slug="production")
    _, raw = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="other")
    runtime = APIClient()
    runtime.credentials(HTTP_AUTHORIZATION=raw)

    wrong = APIClient().post(
        "/api/v1/auth/token/", {"username": "olivia-operator", "password": "wrong"}, format="json"
    )
    beat = runtime.post("/api/runtime/v1/heartbeat", {"instance_id": "pod-9"}, format="json")

    assert wrong.status_code == 401  # refused as ever, not a 500 from the throttle's cache
    assert beat.status_code == 200


@pytest.mark.parametrize("what", ["tenants", "agents", "environments"])
def test_outage__archive_listener_raises__archive_answers_200_and_the_others_run(
    published: list[dict[str, Any]], tenant: Tenant, admin: Any, agent: Agent, what: str
) -> None:
    """The archive hooks are isolated like the revision hooks: a raising listener costs
    neither the committed archive's 200 nor the fast path's token drop after it."""

    def broken(event: events.Event) -> None:
        raise RuntimeError("a subscriber blew up")

    target = {
        "tenants": tenant,
        "agents": agent,
        "environments": tenant.environments.get(slug="staging"),
    }[what]
    events.subscribe(events.SCOPE_ARCHIVED, broken, everywhere=True)
    try:
        response = api_as(admin).post(
            f"/api/v1/{what}/{target.pk}/archive/", {"reason": "retired"}, format="json"
        )
    finally:
        events.unsubscribe(events.SCOPE_ARCHIVED, broken, everywhere=True)

    assert response.status_code == 200, response.content
    assert _archived(what[:-1], target.pk, published)
