"""The real Unleash Python SDK (``UnleashClient``, pinned in pyproject) against the real ASGI
server: fixtures to start clients and to read server-sent events."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from UnleashClient import UnleashClient
from UnleashClient.utils import InstanceAllowType

SdkFactory = Callable[..., UnleashClient]


def wait_until(
    predicate: Callable[[], bool], timeout: float = 15.0, interval: float = 0.05
) -> bool:
    """Poll until ``predicate()`` holds; False when it never did within ``timeout``. Tests
    assert the outcome, never how long it took."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture
def sdk(asgi_server: str, tmp_path: Path) -> Iterator[SdkFactory]:
    clients: list[UnleashClient] = []

    def start(
        token: str,
        *,
        app_name: str = "conformance",
        streaming: bool = False,
        metrics: bool = False,
        register: bool = False,
        refresh_interval: int = 1,
        instance_id: str | None = None,
        custom_strategies: dict[str, Any] | None = None,
    ) -> UnleashClient:
        client = UnleashClient(
            url=asgi_server + "/api",
            app_name=app_name,
            instance_id=instance_id or f"test-{len(clients)}",
            refresh_interval=refresh_interval,
            metrics_interval=1,
            disable_metrics=not metrics,
            disable_registration=not register,
            custom_headers={"Authorization": token},
            cache_directory=str(tmp_path / f"unleash-cache-{len(clients)}"),
            multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
            experimental_mode={"type": "streaming"} if streaming else {"type": "polling"},
            custom_strategies=custom_strategies,
        )
        client.initialize_client()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.destroy()


class EventStream:
    """A minimal server-sent events reader over ``requests`` (one event per call)."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self._lines = response.iter_lines(decode_unicode=True)

    def next_event(self) -> tuple[str, dict[str, Any]]:
        name, data = "", []
        for line in self._lines:
            if line is None:
                continue
            if line == "":
                if data:
                    return name, json.loads("\n".join(data))
                name = ""
                continue
            if line.startswith(":"):
                continue  # keep-alive comment
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        raise EOFError("the stream ended")


@pytest.fixture
def open_stream(asgi_server: str) -> Iterator[Callable[[str], EventStream]]:
    responses: list[requests.Response] = []

    def open_(token: str) -> EventStream:
        response = requests.get(
            f"{asgi_server}/api/client/streaming",
            stream=True,
            timeout=20,
            headers={
                "Authorization": token,
                "Accept": "text/event-stream",
                "Unleash-Client-Spec": "5.0.0",
            },
        )
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        responses.append(response)
        return EventStream(response)

    yield open_
    for response in responses:
        response.close()
