"""Scale-out: two fast-path processes started separately (not workers of one server), sharing
only PostgreSQL and Redis. A change made through one reaches the runtimes long-polling the
other, woken by the event over Redis pub/sub — the catch-up poll is set to an hour in both, so
nothing else could have told the second process in time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 25  # the long-poll's own bound; the change is made well inside it

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs Redis (TEST_REDIS_URL)"),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="two processes share one database: PostgreSQL",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(tmp_path: Path, name: str) -> Iterator[str]:
    """``uvicorn controlplane.asgi:application`` in its own process, on the test database."""
    port = _free_port()
    settings = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings.base",
        "DATABASE_URL": f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}"
        f"/{settings['NAME']}",
        "REDIS_URL": os.environ["TEST_REDIS_URL"],
        # the test's own var dir (this worker's): the embedded signing key lives there
        "CONTROLPLANE_VAR_DIR": os.environ["CONTROLPLANE_VAR_DIR"],
        "FASTPATH_POLL_INTERVAL_S": "3600",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "uvicorn", "controlplane.asgi:application", "--host"]
    command += ["127.0.0.1", "--port", str(port), "--log-level", "warning"]
    command += ["--timeout-graceful-shutdown", "1"]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / f"{name}.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or busy starting
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log = (tmp_path / f"{name}.log").read_text()[-2000:]
                raise RuntimeError(f"server {name} did not start: {log}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def installed(transactional_db: None) -> dict[str, Any]:
    """A tenant, a runtime token for its production and an Admin's API token, made the way
    an installation makes them."""
    from apps.accounts.runtime_tokens import runtime_token_create
    from apps.accounts.services import admin_ensure, api_token_rotate
    from apps.audit.services import SystemActor
    from apps.tenancy.services import tenant_create

    actor = SystemActor("test")
    tenant = tenant_create(actor=actor, slug="scale", name="Scale")
    production = tenant.environments.get(slug="production")
    _, runtime_token = runtime_token_create(
        actor=actor, tenant=tenant, environment=production, name="fleet"
    )
    admin, _ = admin_ensure(username="scale-admin")
    return {
        "environment": production.pk,
        "runtime_token": runtime_token,
        "api_token": api_token_rotate(actor=actor, user=admin),
    }


def test_two_processes__change_through_one__wakes_long_polls_on_the_other(
    installed: dict[str, Any], tmp_path: Path
) -> None:
    with _server(tmp_path, "a") as a, _server(tmp_path, "b") as b:
        runtime = {"Authorization": installed["runtime_token"], "Accept-Encoding": "identity"}
        first = requests.get(b + "/api/runtime/v1/config", headers=runtime, timeout=10)
        assert first.status_code == 200
        revision = int(first.headers["X-Revision"])

        answers: list[requests.Response] = []

        def long_poll() -> None:
            answers.append(
                requests.get(
                    f"{b}/api/runtime/v1/config?wait={WAIT_S}",
                    headers={**runtime, "If-None-Match": first.headers["ETag"]},
                    timeout=WAIT_S + 10,
                )
            )

        pollers = [threading.Thread(target=long_poll) for _ in range(3)]
        for poller in pollers:
            poller.start()
        time.sleep(1)  # the long-polls are held by b now (they wait WAIT_S otherwise)

        engaged = requests.post(
            a + "/api/v1/kill-switches/",
            headers={"Authorization": f"Token {installed['api_token']}"},
            json={
                "kind": "tool_disabled",
                "scope": "environment",
                "environment": installed["environment"],
                "tool_pattern": "issue_refund",
                "reason": "incident: refunds misfire",
            },
            timeout=30,
        )
        assert engaged.status_code == 201, engaged.text
        for poller in pollers:
            poller.join(timeout=WAIT_S + 15)

    assert len(answers) == 3
    for answer in answers:
        # 200 with the new revision, not the 304 a long-poll gets when its wait runs out.
        assert answer.status_code == 200
        assert int(answer.headers["X-Revision"]) > revision
        assert "issue_refund" in answer.text
