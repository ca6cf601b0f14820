from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Receiver:
    """A real HTTP receiver on loopback: answers ``statuses`` in turn (then 204), records
    every POST's headers and body."""

    url: str
    statuses: list[int]
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def loopback_allowed(settings) -> None:  # type: ignore[no-untyped-def]
    # The receivers listen on loopback, which production refuses: allow it deliberately.
    settings.RUNTIME_PUSH_ALLOWED_CIDRS = ["127.0.0.0/8"]


@pytest.fixture
def receiver(loopback_allowed: None) -> Iterator[Receiver]:
    state = Receiver(url="", statuses=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((dict(self.headers), body))
            self.send_response(state.statuses.pop(0) if state.statuses else 204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    yield state
    server.shutdown()
    server.server_close()
