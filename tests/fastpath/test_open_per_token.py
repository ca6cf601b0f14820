"""One runtime token cannot hold every connection of a fast-path process: its open streams
and waiting long-polls are capped (``FASTPATH_MAX_OPEN_PER_TOKEN``), beyond which it gets a
429 with ``Retry-After``; other tokens and non-waiting requests are unaffected, and a closed
connection frees its place (issue 9, item 6: shared state grown by one token)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.tenancy.models import Tenant

ACTOR = SystemActor("test")
SPEC = {"Unleash-Client-Spec": "5.0.0"}
LIMIT = 2


def _token(tenant: Tenant, name: str) -> str:
    _, raw = runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        name=name,
    )
    return raw


@pytest.fixture
def capped(settings: Any) -> None:
    settings.FASTPATH_MAX_OPEN_PER_TOKEN = LIMIT


def _stream(base: str, token: str) -> requests.Response:
    return requests.get(
        base + "/api/client/streaming",
        headers={"Authorization": token, "Accept": "text/event-stream", **SPEC},
        stream=True,
        timeout=20,
    )


def _eventually(check: Any, attempts: int = 100) -> Any:
    """Retry ``check`` until it returns something other than None (a closed connection is
    noticed by the server asynchronously; a 4xx ``Response`` is falsy, hence not ``if``)."""
    for _ in range(attempts):
        result = check()
        if result is not None:
            return result
        time.sleep(0.05)
    raise AssertionError("never happened")


def _refused(response: requests.Response) -> None:
    assert response.status_code == 429, response.headers  # not the body: it may be a stream
    assert response.headers["Retry-After"].isdigit()
    assert "FASTPATH_MAX_OPEN_PER_TOKEN" in response.json()["detail"]


def test_streams__beyond_the_cap__429_other_tokens_unaffected_and_closing_frees_a_place(
    asgi_server: str, tenant: Tenant, capped: None
) -> None:
    mine, other = _token(tenant, "fleet a"), _token(tenant, "fleet b")
    open_streams = [_stream(asgi_server, mine) for _ in range(LIMIT)]
    assert [r.status_code for r in open_streams] == [200] * LIMIT

    _refused(_stream(asgi_server, mine))
    _refused(_stream(asgi_server, mine))  # refusals are not counted either
    others = _stream(asgi_server, other)
    assert others.status_code == 200
    others.close()

    open_streams.pop().close()

    def reopened() -> requests.Response | None:
        response = _stream(asgi_server, mine)
        if response.status_code == 200:
            return response
        response.close()
        return None

    open_streams.append(_eventually(reopened))
    for response in open_streams:
        response.close()


def test_long_polls__count_with_streams__429_beyond_the_cap_plain_requests_still_served(
    asgi_server: str, tenant: Tenant, capped: None
) -> None:
    mine = _token(tenant, "fleet a")
    url = asgi_server + "/api/client/features"
    headers = {"Authorization": mine, **SPEC}
    tag = requests.get(url, headers=headers, timeout=5).headers["ETag"]
    now = {**headers, "If-None-Match": tag}
    open_streams = [_stream(asgi_server, mine) for _ in range(LIMIT)]
    assert [r.status_code for r in open_streams] == [200] * LIMIT

    # A long-poll that would wait is one more held connection: refused
    for wait in ("0.5", "30", "60"):
        _refused(requests.get(f"{url}?wait={wait}", headers=now, timeout=5))
    # What does not wait is not held: a plain GET, a poll whose tag is stale, a zero wait
    assert requests.get(url, headers=headers, timeout=5).status_code == 200
    stale = {**headers, "If-None-Match": '"stale"'}
    assert requests.get(url + "?wait=30", headers=stale, timeout=5).status_code == 200
    assert requests.get(url + "?wait=0", headers=now, timeout=5).status_code == 304

    for response in open_streams:
        response.close()

    def waited() -> requests.Response | None:
        response = requests.get(url + "?wait=0.2", headers=now, timeout=5)
        return response if response.status_code == 304 else None

    _eventually(waited)
