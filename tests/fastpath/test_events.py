"""The event seam (``apps.core.events``) and the fast path's generalised routes: an event is
announced only once its transaction commits, reaches the subscribers of its topic only, rides
Redis to other processes, and wakes exactly the fast-path waiters of its ``(topic, key)``."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import redis
import requests
from django.db import transaction

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.core import events
from apps.core.fastpath import Route, TokenScope, Topic, register, register_topic
from apps.core.fastpath.registry import registry
from apps.tenancy.models import Tenant
from apps.tenancy.services import environment_revision_bump

ACTOR = SystemActor("test")
TOPIC = "test.item"
ITEMS_PATH = "/api/test-only/items/{item}"
VERSIONS: dict[str, int] = {}  # the "database" of the test topic: item -> version


@pytest.fixture
def heard() -> Iterator[dict[str, list[events.Event]]]:
    """Once and everywhere subscribers of two test topics, by name."""
    received: dict[str, list[events.Event]] = {"a": [], "b": [], "a_everywhere": []}
    handlers = {name: received[name].append for name in received}
    events.subscribe("test.a", handlers["a"])
    events.subscribe("test.b", handlers["b"])
    events.subscribe("test.a", handlers["a_everywhere"], everywhere=True)
    yield received
    events.unsubscribe("test.a", handlers["a"])
    events.unsubscribe("test.b", handlers["b"])
    events.unsubscribe("test.a", handlers["a_everywhere"], everywhere=True)


@pytest.mark.django_db(transaction=True)
def test_publish_after_commit__rollback__nothing_delivered(
    heard: dict[str, list[events.Event]],
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        events.publish_after_commit("test.a", "1", {"n": 1})
        raise RuntimeError("the change fails")

    assert heard == {"a": [], "b": [], "a_everywhere": []}


@pytest.mark.django_db(transaction=True)
def test_publish_after_commit__commit__delivered_after_not_before(
    heard: dict[str, list[events.Event]],
) -> None:
    with transaction.atomic():
        events.publish_after_commit("test.a", "1", {"n": 1})
        assert heard["a"] == []  # not yet: the transaction may still roll back

    expected = events.Event("test.a", "1", {"n": 1})
    assert heard["a"] == [expected]
    assert heard["a_everywhere"] == [expected]


@pytest.mark.django_db(transaction=True)
def test_subscribe__by_topic__only_that_topics_events(
    heard: dict[str, list[events.Event]],
) -> None:
    with transaction.atomic():
        events.publish_after_commit("test.b", "7", {})

    assert heard["b"] == [events.Event("test.b", "7", {})]
    assert heard["a"] == [] and heard["a_everywhere"] == []


def test_subscribe__raising_handler__the_next_still_runs(
    heard: dict[str, list[events.Event]],
) -> None:
    def broken(event: events.Event) -> None:
        raise RuntimeError("a subscriber blew up")

    events.subscribe("test.b", broken)
    events.subscribe("test.b", heard["b"].append)  # already there: no second registration
    try:
        events._publish(events.Event("test.b", "1"))
    finally:
        events.unsubscribe("test.b", broken)

    assert len(heard["b"]) == 1


def test_receive__channel_message__everywhere_subscribers_only(
    heard: dict[str, list[events.Event]],
) -> None:
    """What another process published reaches this one's everywhere subscribers; the once
    subscribers already ran in the process that committed."""
    events.receive({"topic": "test.a", "key": "3", "payload": {"revision": 3}})

    assert heard["a_everywhere"] == [events.Event("test.a", "3", {"revision": 3})]
    assert heard["a"] == []
    with pytest.raises(ValueError):
        events.receive({"t": "rev", "e": 1, "r": 2})


@pytest.mark.django_db(transaction=True)
def test_publish_after_commit__redis_configured__on_the_channel(settings: Any) -> None:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis is not available (TEST_REDIS_URL unset); .ci/run requires it")
    settings.REDIS_URL = url
    events.reset_redis_client()
    pubsub = redis.Redis.from_url(url).pubsub()
    pubsub.subscribe(events.channel())
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    try:
        with transaction.atomic():
            events.publish_after_commit("test.a", "9", {"revision": 9})

        expected = {"topic": "test.a", "key": "9", "payload": {"revision": 9}}
        for _ in range(50):  # the channel is shared: skip other processes' messages
            message = pubsub.get_message(timeout=0.2)
            if message is not None and json.loads(message["data"]) == expected:
                break
        else:
            pytest.fail("the event never reached the Redis channel")
    finally:
        pubsub.close()
        events.reset_redis_client()


# ------------------------------------------------------------------ generalised fast path


def _item_build(scope: TokenScope, variant: str, key: str) -> tuple[int, bytes]:
    version = VERSIONS[key]
    return version, json.dumps({"item": key, "version": version}).encode()


def _item_key(scope: TokenScope, params: Mapping[str, str]) -> str:
    return params["item"]


@pytest.fixture
def items() -> Iterator[str]:
    VERSIONS.clear()
    VERSIONS.update({"a": 1, "b": 1})
    register_topic(Topic(TOPIC, current=lambda key: VERSIONS[key]))
    register(
        Route(
            path=ITEMS_PATH,
            kind="test-items",
            build=_item_build,
            topic=TOPIC,
            topic_key=_item_key,
            max_wait_s=10,
        )
    )
    yield ITEMS_PATH
    registry.remove(ITEMS_PATH)
    registry.topics.pop(TOPIC, None)


@pytest.fixture
def token(tenant: Tenant) -> str:
    _, raw = runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        name="test runtime",
    )
    return raw


def _long_poll(url: str, token: str, etag: str, into: dict[str, requests.Response]) -> None:
    into[url] = requests.get(
        url + "?wait=3", headers={"Authorization": token, "If-None-Match": etag}, timeout=15
    )


def test_fastpath_route__path_parameter_and_topic__wakes_on_its_key_only(
    asgi_server: str, items: str, token: str, tenant: Tenant
) -> None:
    urls = {item: f"{asgi_server}/api/test-only/items/{item}" for item in ("a", "b")}
    first = {
        item: requests.get(url, headers={"Authorization": token}, timeout=5)
        for item, url in urls.items()
    }
    assert first["a"].json() == {"item": "a", "version": 1}
    results: dict[str, requests.Response] = {}
    pollers = [
        threading.Thread(
            target=_long_poll, args=(urls[i], token, first[i].headers["ETag"], results)
        )
        for i in ("a", "b")
    ]
    for poller in pollers:
        poller.start()
    threading.Event().wait(0.5)  # let both polls park

    # an environment revision (another topic) and item b's new version (another key of a's)
    with transaction.atomic():
        environment_revision_bump(environment_id=tenant.environments.get(slug="production").pk)
    VERSIONS["b"] = 2
    with transaction.atomic():
        events.publish_after_commit(TOPIC, "b", {"revision": 2})
    for poller in pollers:
        poller.join(timeout=15)

    assert results[urls["b"]].status_code == 200
    assert results[urls["b"]].json() == {"item": "b", "version": 2}
    assert results[urls["a"]].status_code == 304  # waited out its timeout: not woken


def test_fastpath_route__method_not_declared__405_with_allow(
    asgi_server: str, items: str, token: str
) -> None:
    response = requests.post(
        f"{asgi_server}/api/test-only/items/a", headers={"Authorization": token}, timeout=5
    )

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert set(response.json()) == {"detail", "errors"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/3", "cp:events:3"),
        ("redis://127.0.0.1:6379/12", "cp:events:12"),
        ("redis://127.0.0.1:6379", "cp:events:0"),
        ("redis://:secret@redis.internal:6380/0", "cp:events:0"),
        # the database as redis-py reads it: in the query, and for a Unix socket
        ("redis://127.0.0.1:6379?db=4", "cp:events:4"),
        ("redis://127.0.0.1:6379/3?db=5", "cp:events:5"),
        ("unix:///var/run/redis.sock?db=2", "cp:events:2"),
        ("unix:///var/run/redis.sock", "cp:events:0"),
        ("", "cp:events:0"),
    ],
)
def test_channel__per_redis_database(url: str, expected: str) -> None:
    # Pub/sub channels are global to a Redis server: installations (or test workers) on
    # different databases of one server must not hear each other's revisions.
    assert events.channel(url) == expected
