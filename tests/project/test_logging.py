"""The log says a client's mistake in one line, and keeps the traceback of our own faults."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """What the configured console handler (settings.LOGGING) writes, from now on."""
    (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "console"]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def _lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.strip()]


def test_forbidden_page__logs_one_line_without_traceback(
    viewer: User, console: io.StringIO
) -> None:
    client = Client()
    client.force_login(viewer)
    console.truncate(0)  # the login's own lines
    console.seek(0)
    assert client.get("/users/").status_code == 403  # Admins only
    assert client.get("/users/new/").status_code == 403
    assert _lines(console) == [
        "Forbidden (Permission denied): /users/",
        "Forbidden (Permission denied): /users/new/",
    ]


def test_disallowed_host__logs_one_line_without_traceback(console: io.StringIO) -> None:
    assert Client().get("/login/", HTTP_HOST="evil.example").status_code == 400
    lines = _lines(console)
    assert len(lines) == 1, lines
    assert "evil.example" in lines[0]


def test_server_error__keeps_its_traceback(console: io.StringIO) -> None:
    try:
        raise RuntimeError("a fault of ours")
    except RuntimeError:
        logging.getLogger("django.request").error(
            "Internal Server Error: /x/", exc_info=True, extra={"status_code": 500}
        )
    text = console.getvalue()
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: a fault of ours" in text
