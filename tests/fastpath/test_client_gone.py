"""A client that goes away mid long-poll frees what it held at once (the fast path's
``_until_disconnect`` watcher, one per waiting request),
instead of when its ``wait`` runs out: its place among the token's held connections, and the
server's task (which a stopping server would otherwise wait for)."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.tenancy.models import Tenant

from .test_open_per_token import _eventually, _refused

SPEC = {"Unleash-Client-Spec": "5.0.0"}


@pytest.fixture
def one_held(settings: Any) -> None:
    settings.FASTPATH_MAX_OPEN_PER_TOKEN = 1


def _raw_long_poll(base: str, path: str, headers: dict[str, str]) -> socket.socket:
    """Send a GET and leave it waiting (nothing read): the caller closes the socket."""
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


@pytest.mark.parametrize("path", ["/api/client/features?wait=60", "/api/runtime/v1/config?wait=60"])
def test_long_poll__client_disconnects__its_place_is_free_at_once(
    asgi_server: str, tenant: Tenant, one_held: None, path: str
) -> None:
    _, token = runtime_token_create(
        actor=SystemActor("test"),
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        name="fleet",
    )
    url = asgi_server + path.split("?")[0]
    headers = {"Authorization": token, **SPEC}
    tag = requests.get(url, headers=headers, timeout=5).headers["ETag"]
    held = {**headers, "If-None-Match": tag}
    waiting = _raw_long_poll(asgi_server, path, held)

    def refused() -> requests.Response | None:
        response = requests.get(url + "?wait=0.2", headers=held, timeout=5)
        return response if response.status_code == 429 else None

    _refused(_eventually(refused))  # the raw long-poll holds the token's one place
    waiting.close()  # the runtime goes away, 60 s before its wait would end

    def waited() -> requests.Response | None:
        response = requests.get(url + "?wait=0.2", headers=held, timeout=5)
        return response if response.status_code == 304 else None

    assert _eventually(waited).status_code == 304
