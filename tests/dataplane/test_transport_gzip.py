"""The reference runtime's HTTP client inflates gzip-coded answers (what the control plane
serves when asked, docs/runtime-api.md "Compression") and refuses what it cannot trust: a
broken or cut short stream, a gzip bomb, a coding it never asked for."""

from __future__ import annotations

import gzip

import pytest

from dataplane import transport
from dataplane.transport import TransportError, decode_body

PLAIN = b'{"snapshot":{"revision":7},"digest":"ab"}' * 50


@pytest.mark.parametrize("coding", ["gzip", "GZIP", "x-gzip", " gzip ", "identity, gzip"])
def test_decode_body__gzip__the_plain_bytes(coding: str) -> None:
    assert decode_body(gzip.compress(PLAIN, mtime=0), coding) == PLAIN


@pytest.mark.parametrize("coding", [None, "", "identity"])
def test_decode_body__no_coding__as_sent(coding: str | None) -> None:
    assert decode_body(PLAIN, coding) == PLAIN


@pytest.mark.parametrize(
    ("payload", "coding", "error"),
    [
        (b"\x1f\x8bnot gzip", "gzip", "broken gzip"),
        (gzip.compress(PLAIN, mtime=0)[:40], "gzip", "cut short"),
        (PLAIN, "br", "unsupported"),
        (gzip.compress(PLAIN, mtime=0), "gzip, gzip", "unsupported"),
    ],
    # ids by name: the bytes would make them, and pytest-xdist's workers must collect the same
    ids=["not-gzip", "cut-short", "brotli", "gzip-twice"],
)
def test_decode_body__untrustworthy__transport_error(
    payload: bytes, coding: str, error: str
) -> None:
    with pytest.raises(TransportError, match=error):
        decode_body(payload, coding)


def test_decode_body__inflates_past_the_limit__refused() -> None:
    bomb = gzip.compress(b"\x00" * 100_000)
    assert len(bomb) < 1_000
    with pytest.raises(TransportError, match="inflates past"):
        decode_body(bomb, "gzip", limit=1_000)
    assert decode_body(bomb, "gzip", limit=100_000) == b"\x00" * 100_000
    assert transport.MAX_INFLATED_BYTES >= 16 * 1024 * 1024  # far above any snapshot
