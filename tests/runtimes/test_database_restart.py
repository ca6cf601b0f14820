"""PostgreSQL restarted during a request (issue 9, the nets: fault tests).

The database server is shared, so a restart is simulated the way it looks to the product: every
backend of the test database is terminated (``pg_terminate_backend``) from a connection of the
test's own, which is what a restart or failover does to the open connections. The test thread's
Django connection is spared: it stands for nothing the product runs. Everything the product
does goes through the real ASGI application under uvicorn (fast path in front of Django), with
connections closed after each request (``CONN_MAX_AGE=0``) and kept open (``60``)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from django.conf import settings as django_settings
from django.db import OperationalError, connection, connections
from django.test import Client, RequestFactory

from apps.accounts.runtime_tokens import runtime_token_create
from apps.accounts.services import api_token_rotate
from apps.audit.models import AuditEvent
from apps.audit.services import _CHAIN_LOCK_KEY, SystemActor, audit_chain_verify
from apps.bundles.services import bundle_version_push
from apps.core import errors
from apps.core.errors import DATABASE_UNAVAILABLE_DETAIL
from apps.core.fastpath import Route, TokenScope, register
from apps.core.fastpath.registry import registry
from apps.flags.models import KillSwitch
from apps.flags.services import flag_create
from apps.rollouts.models import Deployment
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory

ACTOR = SystemActor("test")
DEMO = Path(__file__).resolve().parents[2] / "apps" / "bundles" / "demo"
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
        reason="terminates PostgreSQL backends",
    ),
]


# ------------------------------------------------------------------ the fault


def _connect(*, autocommit: bool = True) -> psycopg.Connection[Any]:
    params = connection.settings_dict
    return psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"] or None,
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        autocommit=autocommit,
    )


def _own_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _restart(*spared: int) -> int:
    """Terminate every backend of the test database but the test thread's and ``spared``:
    what a restart does to the product's open connections. Returns how many it ended."""
    with _connect() as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND NOT (pid = ANY(%s))",
            [[_own_pid(), *spared]],
        ).fetchall()
    return len(rows)


@pytest.fixture(params=[0, 60], ids=["closed-per-request", "persistent"])
def conn_max_age(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Both ways an operator runs the product (``CONN_MAX_AGE``). The settings dict is the one
    every thread's connection reads when it connects, the server's included."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", request.param)
    yield request.param
    _restart()  # leave no persistent connection of the server open past the test


@pytest.fixture
def server(conn_max_age: int, asgi_server: str) -> str:
    return asgi_server


@pytest.fixture(autouse=True)
def _slow_revision_poll(settings: Any) -> None:
    # The fast path's catch-up poll of revisions would otherwise meet a dropped connection
    # first, at a moment of its choosing: with it slow, the requests under test meet it.
    settings.FASTPATH_POLL_INTERVAL_S = 600


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="support-bot", name="Support bot")


@pytest.fixture
def production(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="production")


@pytest.fixture
def operator_key(operator: Any) -> str:
    return api_token_rotate(actor=operator, user=operator)


def _runtime_token(environment: Environment) -> str:
    _, raw = runtime_token_create(
        actor=ACTOR, tenant=environment.tenant, environment=environment, name="fleet"
    )
    return raw


def _engage_body(agent: Agent) -> dict[str, Any]:
    return {
        "kind": "agent_mode",
        "scope": "agent",
        "agent": agent.pk,
        "mode": "read_only",
        "reason": "bad writes",
    }


# How each kind of answer says "database unavailable" as {"detail", "errors"}: the API's error
# shape under /api/, the bare detail in a text page elsewhere.
_READ_ERROR: dict[str, Callable[[str], Any]] = {
    "application/json": json.loads,
    "text/plain": lambda text: {"detail": text, "errors": {}},
}


def _assert_unavailable(response: requests.Response, content_type: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith(content_type)
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"
    error = _READ_ERROR[content_type](response.text)
    assert error == {"detail": DATABASE_UNAVAILABLE_DETAIL, "errors": {}}


# ------------------------------------------------------------------ a. between requests


def test_restart_between_requests__every_next_request_succeeds(
    server: str,
    conn_max_age: int,
    tenant: Tenant,
    production: Environment,
    agent: Agent,
    operator: Any,
    operator_key: str,
) -> None:
    web = Client()
    web.force_login(operator)
    cookies = {
        django_settings.SESSION_COOKIE_NAME: web.cookies[django_settings.SESSION_COOKIE_NAME].value
    }
    operator_auth = {"Authorization": f"Token {operator_key}"}
    first = requests.get(
        server + "/api/runtime/v1/config",
        headers={"Authorization": _runtime_token(production)},
        timeout=10,
    )
    assert first.status_code == 200
    etag = first.headers["ETag"]

    # Each is the first request after a restart; a new runtime token each time makes the fast
    # path look it up in the database (a known one is answered from its cache).
    requests_after_restart: list[tuple[Callable[[], requests.Response], int]] = [
        (
            lambda: requests.get(
                server + "/api/runtime/v1/config",
                headers={"Authorization": _runtime_token(production)},
                timeout=10,
            ),
            200,
        ),
        (
            lambda: requests.get(
                server + "/api/runtime/v1/config",
                headers={"Authorization": _runtime_token(production), "If-None-Match": etag},
                timeout=10,
            ),
            304,
        ),
        (
            lambda: requests.get(
                server + "/api/client/features",
                headers={"Authorization": _runtime_token(production)},
                timeout=10,
            ),
            200,
        ),
        (
            lambda: requests.post(
                server + "/api/runtime/v1/heartbeat",
                json={"instance_id": "pod-1"},
                headers={"Authorization": _runtime_token(production)},
                timeout=10,
            ),
            200,
        ),
        (
            lambda: requests.get(
                server + "/api/v1/kill-switches/", headers=operator_auth, timeout=10
            ),
            200,
        ),
        (
            lambda: requests.post(
                server + "/api/v1/kill-switches/",
                json=_engage_body(agent),
                headers=operator_auth,
                timeout=10,
            ),
            201,
        ),
        (lambda: requests.get(server + "/flags/kill-switches/", cookies=cookies, timeout=10), 200),
        (
            # the engage above moved the revision: the config is built again, from the database
            lambda: requests.get(
                server + "/api/runtime/v1/config",
                headers={"Authorization": _runtime_token(production), "If-None-Match": etag},
                timeout=10,
            ),
            200,
        ),
    ]
    for send, expected in requests_after_restart:
        _restart()
        response = send()
        assert response.status_code == expected, response.text
    assert KillSwitch.objects.count() == 1
    assert audit_chain_verify().ok


# ------------------------------------------------------------------ b. during a request


@pytest.fixture
def operator_session(operator: Any) -> requests.Session:
    """A browser session of the operator, against the server."""
    web = Client()
    web.force_login(operator)
    session = requests.Session()
    name = django_settings.SESSION_COOKIE_NAME
    session.cookies.set(name, web.cookies[name].value)
    return session


def _engage(server: str, key: str, agent: Agent, production: Environment) -> requests.Response:
    return requests.post(
        server + "/api/v1/kill-switches/",
        json=_engage_body(agent),
        headers={"Authorization": f"Token {key}"},
        timeout=30,
    )


def _deploy(server: str, key: str, agent: Agent, production: Environment) -> requests.Response:
    return requests.post(
        server + f"/api/v1/agents/{agent.pk}/releases/{production.pk}/deploy/",
        json={"version": 1, "reason": "launch", "expected_version": 0},
        headers={"Authorization": f"Token {key}"},
        timeout=30,
    )


def _engage_in_ui(session: requests.Session, server: str, agent: Agent) -> requests.Response:
    """The Kill switches page's confirmation form, as the browser sends it."""
    fields = {"kind": "agent_mode", "scope": "agent", "agent": str(agent.pk), "mode": "read_only"}
    page = session.get(server + "/flags/kill-switches/engage/", params=fields, timeout=30)
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert csrf is not None
    return session.post(
        server + "/flags/kill-switches/engage/",
        data={**fields, "reason": "bad writes", "csrfmiddlewaretoken": csrf.group(1)},
        headers={"Referer": server + "/flags/kill-switches/engage/"},
        allow_redirects=False,
        timeout=30,
    )


def _state() -> dict[str, Any]:
    return {
        "kill switches": KillSwitch.objects.count(),
        "deployments": Deployment.objects.count(),
        "audit events": AuditEvent.objects.count(),
        "revisions": dict(Environment.objects.values_list("pk", "revision")),
    }


@pytest.mark.parametrize(
    ("change", "done", "content_type"),
    [
        ("api-engage", 201, "application/json"),
        ("api-deploy", 201, "application/json"),
        ("ui-engage", 302, "text/plain"),
    ],
)
def test_restart_inside_a_change__503_retry_after_nothing_half_done_then_it_works(
    change: str,
    done: int,
    content_type: str,
    server: str,
    tenant: Tenant,
    production: Environment,
    agent: Agent,
    operator_key: str,
    operator_session: requests.Session,
) -> None:
    bundle_version_push(
        actor=ACTOR,
        agent=agent,
        message="baseline",
        source=(DEMO / "support-bot-v1.yaml").read_text(),
    )
    send: Callable[[], requests.Response] = {
        "api-engage": lambda: _engage(server, operator_key, agent, production),
        "api-deploy": lambda: _deploy(server, operator_key, agent, production),
        "ui-engage": lambda: _engage_in_ui(operator_session, server, agent),
    }[change]
    before = _state()
    result: dict[str, requests.Response] = {}

    # Given the audit chain's lock held elsewhere, the change stops inside its transaction
    # at its audit event: its own rows (switch or deployment, revision bump) written, not
    # committed.
    with _connect(autocommit=False) as holder, _connect() as watcher:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])
        request = threading.Thread(target=lambda: result.setdefault("r", send()))
        request.start()
        deadline = time.monotonic() + 20
        while not watcher.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        ).fetchone():
            assert time.monotonic() < deadline, "the change never reached its audit event"
            time.sleep(0.02)

        # When the database restarts under it
        ended = _restart(holder.info.backend_pid, watcher.info.backend_pid)
        holder.rollback()
        request.join(timeout=30)

    # then the client is told to come back, and nothing of the change remains
    assert ended >= 1
    _assert_unavailable(result["r"], content_type)
    assert _state() == before

    # and the same change, sent again, goes through whole
    again = send()
    assert again.status_code == done, again.text
    after = _state()
    assert after["audit events"] == before["audit events"] + 1
    assert after["revisions"] != before["revisions"]
    assert audit_chain_verify().ok


# ------------------------------------------------------------------ c. a long-poll in flight


def _long_poll(server: str, token: str, etag: str, wait: float) -> dict[str, Any]:
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "r",
            requests.get(
                server + f"/api/runtime/v1/config?wait={wait}",
                headers={"Authorization": token, "If-None-Match": etag},
                timeout=wait + 20,
            ),
        )
    )
    thread.start()
    result["thread"] = thread
    return result


def test_restart_during_long_poll__a_change_after_it_still_wakes_the_poll(
    server: str,
    production: Environment,
    agent: Agent,
    operator_key: str,
) -> None:
    token = _runtime_token(production)
    first = requests.get(
        server + "/api/runtime/v1/config", headers={"Authorization": token}, timeout=10
    )
    poll = _long_poll(server, token, first.headers["ETag"], wait=10)
    threading.Event().wait(0.5)  # let the poll park before the restart

    _restart()
    engaged = _engage(server, operator_key, agent, production)
    poll["thread"].join(timeout=30)

    assert engaged.status_code == 201, engaged.text
    assert poll["r"].status_code == 200, poll["r"].text  # a timeout would have been a 304
    production.refresh_from_db()
    assert int(poll["r"].headers["X-Revision"]) == production.revision
    assert json.loads(poll["r"].content) != json.loads(first.content)


def test_restart_during_long_poll__no_change__304_at_timeout(
    server: str, production: Environment
) -> None:
    token = _runtime_token(production)
    first = requests.get(
        server + "/api/runtime/v1/config", headers={"Authorization": token}, timeout=10
    )
    poll = _long_poll(server, token, first.headers["ETag"], wait=1)

    _restart()
    poll["thread"].join(timeout=30)

    assert poll["r"].status_code == 304


def test_restart_during_stream__a_change_after_it_is_still_streamed(
    server: str, production: Environment
) -> None:
    # the Unleash streaming route: a long-lived answer that rebuilds after each change
    stream = requests.get(
        server + "/api/client/streaming",
        headers={
            "Authorization": _runtime_token(production),
            "Accept": "text/event-stream",
            "Unleash-Client-Spec": "5.0.0",
        },
        stream=True,
        timeout=20,
    )
    assert stream.status_code == 200
    events = (line for line in stream.iter_lines(decode_unicode=True) if line.startswith("event:"))
    assert next(events) == "event: unleash-connected"

    _restart()
    flag_create(
        actor=ACTOR, environment=production, name="after-restart", enabled=True, reason="test"
    )

    assert next(events) == "event: unleash-updated"
    stream.close()


# ------------------------------------------------------------------ the fast path's own reads

PATH = "/api/test-only/restarting"


def _terminating_builder(times: int) -> Callable[[TokenScope, str], tuple[int, bytes]]:
    """A builder whose connection is terminated under it ``times`` times, then reads."""
    calls = {"n": 0}

    def build(scope: TokenScope, variant: str) -> tuple[int, bytes]:
        calls["n"] += 1
        with connection.cursor() as cursor:
            if calls["n"] <= times:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            cursor.execute(
                "SELECT revision FROM tenancy_environment WHERE id = %s", [scope.environment_id]
            )
            revision = int(cursor.fetchone()[0])
        return revision, json.dumps({"revision": revision}).encode()

    return build


def _get_restarting(server: str, production: Environment, times: int) -> requests.Response:
    register(Route(path=PATH, kind=f"test-restarting-{times}", build=_terminating_builder(times)))
    try:
        return requests.get(
            server + PATH, headers={"Authorization": _runtime_token(production)}, timeout=10
        )
    finally:
        registry.routes.pop(PATH, None)


def test_fast_path_read__connection_dropped_once__retried_and_answered(
    server: str, production: Environment
) -> None:
    response = _get_restarting(server, production, times=1)

    assert response.status_code == 200, response.text
    production.refresh_from_db()
    assert response.json() == {"revision": production.revision}


@pytest.mark.parametrize("times", [2, 5])
def test_fast_path_read__connection_dropped_again__503_retry_after(
    times: int, server: str, production: Environment
) -> None:
    response = _get_restarting(server, production, times=times)

    _assert_unavailable(response, "application/json")


# ------------------------------------------------------------------ outside a view


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/api/v1/kill-switches/", "application/json"), ("/flags/kill-switches/", "text/plain")],
)
def test_database_lost_outside_a_view__handler500__answers_503(
    path: str, content_type: str
) -> None:
    # A middleware's query fails after the backend was terminated: Django hands the request
    # to handler500 while that exception is being handled.
    lost = connections.create_connection("default")
    try:
        with lost.cursor() as cursor:
            cursor.execute("SELECT 1")
        _restart()
        with pytest.raises(OperationalError), lost.cursor() as cursor:
            try:
                cursor.execute("SELECT 1")
            except OperationalError:
                response = errors.server_error(RequestFactory().get(path))
                raise
    finally:
        lost.close()

    assert response.status_code == 503
    assert response["Content-Type"].startswith(content_type)
    assert response["Retry-After"] == str(errors.DATABASE_RETRY_AFTER_S)
