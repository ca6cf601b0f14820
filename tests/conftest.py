from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from apps.core.roles import Role
from apps.tenancy.models import Tenant

from .factories import AgentFactory, EnvironmentFactory, TenantFactory, make_user

# Playwright's sync API runs an event loop in the test thread; the tests' own ORM calls there
# are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist (scripts/test.sh) worker gw<n> uses Redis database <base + n> of
    # TEST_REDIS_URL, so one worker's broker queues and keys never meet another's (pub/sub
    # channels are server-wide whatever the database: the tests that listen skip strangers).
    # Its test database (pytest-django's suffix _gw<n>) and var dir (controlplane/settings/
    # test.py) are its own too.
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        return
    worker = getattr(config, "workerinput", {}).get("workerid", "")
    if worker:
        os.environ["TEST_REDIS_URL"] = worker_redis_url(url, int(worker.removeprefix("gw")))
    elif workers := getattr(config.option, "numprocesses", None):
        worker_redis_url(url, int(workers) - 1)  # refused here, before any worker starts


def worker_redis_url(url: str, index: int) -> str:
    """``url`` with its database number (0 when it names none) raised by ``index``. Raises
    ``pytest.UsageError`` past database 15 (Redis has 16 unless configured otherwise)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    if base + index > 15:
        raise pytest.UsageError(
            f"TEST_REDIS_URL {url}: worker {index} would use Redis database {base + index}; "
            "choose a lower database number or fewer workers (-n)"
        )
    return urlunsplit(parts._replace(path=f"/{base + index}"))


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    return f"database: {engine}; redis: {os.environ.get('TEST_REDIS_URL') or 'not available'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The shared API permission suite (tests/api_permissions.py) derives its cases from the
    # roles; a case no role falls into (no role is denied viewing tenants) has nothing to
    # test. Leave it out rather than report it as a skipped test.
    def empty(item: pytest.Item) -> bool:
        return any(
            str(mark.kwargs.get("reason", "")).startswith("got empty parameter set")
            for mark in item.iter_markers("skip")
        )

    kept = [item for item in items if not empty(item)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if empty(item)])
        items[:] = kept


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # Throttle counters (the token endpoint's) live in the cache: no test inherits another's.
    cache.clear()


@pytest.fixture(autouse=True)
def _database(db: None) -> None:
    # Every test may reach the database, set up before any other fixture (so a fixture such
    # as `tenant` works beside `transactional_db` too). It prepares nothing: role groups come
    # from migrate's post_migrate, which a transactional test's flush sends again.
    return None


@pytest.fixture(scope="session", autouse=True)
def _flush_by_delete() -> Iterator[None]:
    """A transactional test ends with Django's flush: on PostgreSQL one TRUNCATE of every table
    (a new file for each table and index, ~0.1-0.5 s), then post_migrate. Here the same tables
    are emptied with DELETE in one transaction instead (~0.01 s), as a superuser in replica mode
    so neither foreign keys nor the append-only and immutability triggers interfere (the audit
    tables' TRUNCATE guard is lifted for test databases the same way). Same rows gone, same
    sequences kept (Django's TRUNCATE does not restart them either), post_migrate as before; the
    role is restored before the transaction ends, in case a flush runs inside an outer one. A
    flush resetting sequences or cascading, or a database user without superuser rights, gets
    Django's TRUNCATE."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(  # type: ignore[no-untyped-def]
        self, style, tables, *, reset_sequences=False, allow_cascade=False
    ) -> list[str]:
        if tables and not reset_sequences and not allow_cascade:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('is_superuser') = 'on'")
                superuser = cursor.fetchone()[0]
            if superuser:
                return [
                    "SET LOCAL session_replication_role = replica",
                    *(f"DELETE FROM {self.quote_name(table)}" for table in tables),
                    "SET LOCAL session_replication_role = origin",
                ]
        return truncate(
            self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", sql_flush)
        yield


@pytest.fixture(autouse=True)
def _quiet_database_before_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """A transactional test ends with a flush (emptying every table). A request still running
    in a live server's thread (a browser tab's htmx poll, a long-poll) holds locks that deadlock
    with it, and PostgreSQL may pick the flush as the victim, leaving rows behind for the next
    test. Set up after `transactional_db` so this teardown runs first: wait briefly for other
    sessions on the test database to finish, then end the ones still busy."""
    if "transactional_db" not in request.fixturenames and "live_server" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    import time

    busy = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'"
    )
    deadline = time.monotonic() + 5
    with connection.cursor() as cursor:
        while True:
            cursor.execute(busy)
            pids = [row[0] for row in cursor.fetchall()]
            if not pids or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.fixture
def tenant() -> Tenant:
    tenant = TenantFactory(slug="acme", name="Acme")
    for position, slug in enumerate(["development", "staging", "production"]):
        EnvironmentFactory(
            tenant=tenant,
            slug=slug,
            name=slug.title(),
            position=position,
            is_production=slug == "production",
        )
    return tenant


@pytest.fixture
def other_tenant() -> Tenant:
    tenant = TenantFactory(slug="globex", name="Globex")
    EnvironmentFactory(tenant=tenant, slug="production", name="Production", position=0)
    AgentFactory(tenant=tenant, slug="secret-agent", name="Secret agent")
    return tenant


@pytest.fixture
def admin(db: None):  # type: ignore[no-untyped-def]
    return make_user(Role.ADMIN, username="admin-user")


@pytest.fixture
def operator(tenant: Tenant):  # type: ignore[no-untyped-def]
    return make_user(Role.OPERATOR, tenant, username="olivia-operator")


@pytest.fixture
def viewer(tenant: Tenant):  # type: ignore[no-untyped-def]
    return make_user(Role.VIEWER, tenant, username="victor-viewer")


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def api_as(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(user)
    return client


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """One answer the test server sent: the request's method, path and headers, the status
    and the answer's headers (names lower-case; repeated ones joined with ", ")."""

    def __init__(self, scope: dict, status: int, headers: list) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.request_headers = _header_dict(scope["headers"])
        self.status = status
        self.headers = _header_dict(headers)


def _header_dict(raw: list) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


@pytest.fixture
def asgi_served() -> list[Served]:
    """What the ``asgi_server`` of this test answered, in order (see ``Served``): the server's
    side of the wire, e.g. whether an SDK was sent a gzip-coded body."""
    return []


def _observed(app, served: list[Served]):  # type: ignore[no-untyped-def]
    """``app`` with every HTTP answer's status and headers appended to ``served``."""

    async def observed(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def recording(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                served.append(Served(scope, message["status"], message.get("headers", [])))
            await send(message)

        await app(scope, receive, recording)

    return observed


@pytest.fixture
def asgi_server(transactional_db: None, asgi_served: list[Served]):  # type: ignore[no-untyped-def]
    """The real ASGI application (fast path in front of Django) under uvicorn, in a thread,
    on the test database. Yields its base URL; what it answered is in ``asgi_served``."""
    import threading
    import time

    import uvicorn

    from apps.core.fastpath.app import FastPath
    from controlplane.asgi import django_application

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            # as controlplane.asgi composes it, with a fast path of its own, recorded
            _observed(FastPath(django_application), asgi_served),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            # A long-poll whose client has gone ends at once (the fast path watches), but a runtime
            # still attached when a test ends holds one; stopping the server waits for
            # request tasks, so without a bound each such test spent the rest of that wait in
            # teardown. Requests still running after this are cancelled: the test is over.
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def empty_audit_log() -> None:
    """A log with no events yet, for tests of how a chain starts or of everything the audit
    page lists. An installed database holds one already (``migrate`` activates the signing
    key, audited), and so does the test database: removed here, behind the application's
    back (the append-only trigger bypassed in replica mode, as ``tests/audit``'s ``tamper``
    does), inside the test's transaction (a transactional test's flush empties it again)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute("DELETE FROM audit_auditevent")
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("SET session_replication_role = DEFAULT")
