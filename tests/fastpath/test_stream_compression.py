"""The event stream (``/api/client/streaming``) in gzip when ``Accept-Encoding`` allows it: a
sequence of complete gzip members, one per event or comment (RFC 1952 2.2), that decode to
exactly the plain stream's bytes; the hydration member built once per revision however many
clients connect, each update event's once per change; plain without the header or with gzip
refused; read live by the real ``requests``/urllib3 stream reader."""

from __future__ import annotations

import dataclasses
import http.client
import json
import zlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.core.fastpath import encoding
from apps.core.fastpath.encoding import coded_tag
from apps.core.fastpath.registry import registry
from apps.core.fastpath.state import Snapshot, StreamEvents
from apps.flags.models import Flag
from apps.flags.services import flag_create, flag_toggle
from apps.runtimes.unleash_client import STREAMING_PATH
from apps.tenancy.models import Environment, Tenant

from ..conformance.conftest import EventStream
from ..conftest import Served
from .test_compression import GZIP_WANTED, PLAIN_WANTED

ACTOR = SystemActor("test")
SPEC = {"Unleash-Client-Spec": "5.0.0"}
KEEP_ALIVE = b": keep-alive\n\n"


@pytest.fixture
def environment(tenant: Tenant) -> Environment:
    return tenant.environments.get(slug="development")


@pytest.fixture
def flag(environment: Environment) -> Flag:
    return flag_create(
        actor=ACTOR,
        environment=environment,
        name="app.checkout",
        enabled=True,
        strategies=[{"name": "default"}],
    )


@pytest.fixture
def token(environment: Environment, flag: Flag) -> str:
    _, raw = runtime_token_create(
        actor=ACTOR, tenant=environment.tenant, environment=environment, name="stream gzip"
    )
    return raw


@pytest.fixture
def short_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream route as registered, with a keep-alive every 0.3 s instead of 15 s."""
    route = registry.routes[STREAMING_PATH]
    monkeypatch.setitem(
        registry.routes, STREAMING_PATH, dataclasses.replace(route, heartbeat_s=0.3)
    )


class RawStream:
    """One stream read off the wire exactly as sent (``http.client`` de-chunks it and adds no
    ``Accept-Encoding`` of its own): ``headers`` and, one per call, the next event or comment
    (``next_item``) as plain bytes; a gzip stream is decoded member by member with a raw zlib
    loop, and each member must hold exactly one whole item."""

    def __init__(self, base: str, token: str, accept: str | None, **headers: str) -> None:
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=20)
        self.connection.putrequest("GET", STREAMING_PATH, skip_accept_encoding=True)
        sent = {"Authorization": token, "Accept": "text/event-stream", **SPEC, **headers}
        if accept is not None:
            sent["Accept-Encoding"] = accept
        for name, value in sent.items():
            self.connection.putheader(name, value)
        self.connection.endheaders()
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.gzipped = self.headers.get("content-encoding") == "gzip"
        self._pending = b""  # read, not yet consumed (wire bytes: gzip or plain)

    def _read(self) -> bytes:
        data = self.response.read1(65536)
        if not data:
            raise EOFError("the stream ended")
        return data

    def next_member(self) -> bytes:
        """The next gzip member, decoded (a fresh decompressor per member: RFC 1952 2.2)."""
        member = zlib.decompressobj(wbits=31)
        decoded = b""
        while True:
            data, self._pending = (self._pending or self._read()), b""
            decoded += member.decompress(data)
            if member.eof:
                self._pending = member.unused_data
                return decoded

    def next_item(self) -> bytes:
        """The next event or comment, ``\\n\\n`` included."""
        if self.gzipped:
            item = self.next_member()
            assert item.endswith(b"\n\n") and item.count(b"\n\n") == 1, item
            return item
        while b"\n\n" not in self._pending:
            self._pending += self._read()
        item, _, self._pending = self._pending.partition(b"\n\n")
        return item + b"\n\n"

    def next_event(self) -> bytes:
        """The next item that is not a keep-alive."""
        while (item := self.next_item()) == KEEP_ALIVE:
            pass
        return item

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def open_raw(asgi_server: str) -> Iterator[type[RawStream]]:
    streams: list[RawStream] = []

    class Tracked(RawStream):
        def __init__(self, base: str, token: str, accept: str | None, **headers: str) -> None:
            super().__init__(base, token, accept, **headers)
            streams.append(self)

    yield Tracked
    for stream in streams:
        stream.close()


def test_stream__gzip_accepted__members_decode_to_exactly_the_plain_streams_events(
    asgi_server: str,
    token: str,
    flag: Flag,
    short_heartbeat: None,
    open_raw: type[RawStream],
    asgi_served: list[Served],
) -> None:
    plain = open_raw(asgi_server, token, None)
    packed = open_raw(asgi_server, token, "gzip, deflate")

    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    for stream in (plain, packed):
        assert "Accept-Encoding" in stream.headers["vary"]
        assert stream.headers["content-type"].startswith("text/event-stream")
    assert packed.headers["etag"] == coded_tag(plain.headers["etag"], "gzip")

    hydration = plain.next_item()
    assert hydration.startswith(b"event: unleash-connected\nid: ")
    assert packed.next_item() == hydration
    # the heartbeat: a comment, in gzip its own constant member
    assert packed.next_item() == KEEP_ALIVE
    assert plain.next_item() == KEEP_ALIVE

    flag_toggle(actor=ACTOR, flag=flag, enabled=False)

    update = plain.next_event()
    assert update.startswith(b"event: unleash-updated\nid: ")
    [event] = json.loads(update.split(b"data: ", 1)[1])["events"]
    assert (event["type"], event["feature"]["enabled"]) == ("feature-updated", False)
    assert packed.next_event() == update
    streamed = [s for s in asgi_served if s.path == STREAMING_PATH]
    assert sorted(s.headers.get("content-encoding", "") for s in streamed) == ["", "gzip"]


@pytest.mark.parametrize("accept", GZIP_WANTED)
def test_stream__gzip_acceptable__gzip_hydration(
    asgi_server: str, token: str, open_raw: type[RawStream], accept: str
) -> None:
    stream = open_raw(asgi_server, token, accept)

    assert stream.headers["content-encoding"] == "gzip"
    assert stream.next_item().startswith(b"event: unleash-connected\n")


@pytest.mark.parametrize("accept", PLAIN_WANTED)
def test_stream__no_header_or_gzip_refused__plain(
    asgi_server: str, token: str, open_raw: type[RawStream], accept: str | None
) -> None:
    stream = open_raw(asgi_server, token, accept)

    assert "content-encoding" not in stream.headers
    assert "Accept-Encoding" in stream.headers["vary"]
    assert stream.next_item().startswith(b"event: unleash-connected\nid: ")


@pytest.mark.parametrize("accept", ["gzip", None])
def test_stream__either_codings_tag__not_modified_in_the_streams_coding(
    asgi_server: str, token: str, open_raw: type[RawStream], accept: str | None
) -> None:
    plain_tag = open_raw(asgi_server, token, None).headers["etag"]

    for tag in (plain_tag, coded_tag(plain_tag, "gzip"), f"W/{coded_tag(plain_tag, 'gzip')}"):
        stream = open_raw(asgi_server, token, accept, **{"If-None-Match": tag})
        assert stream.gzipped is (accept == "gzip")
        assert stream.next_item() == b": not modified\n\n", tag


def test_stream__many_clients__hydration_compressed_once_per_revision_update_once_per_change(
    asgi_server: str, token: str, flag: Flag, open_raw: type[RawStream]
) -> None:
    before = encoding.compressions.copy()
    first = [open_raw(asgi_server, token, "gzip") for _ in range(4)]
    plain = [open_raw(asgi_server, token, None) for _ in range(2)]
    hydrations = {stream.next_item() for stream in first}
    for stream in plain:
        stream.next_item()

    assert len(hydrations) == 1  # the same bytes for everyone
    assert encoding.compressions["hydration"] - before["hydration"] == 1

    flag_toggle(actor=ACTOR, flag=flag, enabled=False)
    updates = {stream.next_event() for stream in first}
    assert {stream.next_event() for stream in plain} == updates
    [update] = updates
    revision = update.split(b"\n")[1]

    # The connected clients' move to the new revision built its snapshot (and with it the
    # new hydration member) once, and the update event's member once.
    assert encoding.compressions["hydration"] - before["hydration"] == 2
    assert encoding.compressions["event"] - before["event"] == 1

    later = [open_raw(asgi_server, token, "gzip") for _ in range(3)]
    rehydrated = {stream.next_item() for stream in later}
    [hydration] = rehydrated
    assert hydration.split(b"\n")[1] == revision
    assert encoding.compressions["hydration"] - before["hydration"] == 2


def test_stream__requests_urllib3_reader__decodes_gzip_events_live(
    asgi_server: str, token: str, flag: Flag, asgi_served: list[Served]
) -> None:
    """``requests`` asks for gzip by itself; ``iter_lines`` reads through urllib3's gzip
    decoder (``decode_content``), which must hand over each event as its member arrives."""
    response = requests.get(
        asgi_server + STREAMING_PATH,
        headers={"Authorization": token, "Accept": "text/event-stream", **SPEC},
        stream=True,
        timeout=20,
    )
    try:
        assert "gzip" in response.request.headers["Accept-Encoding"]
        assert response.headers["Content-Encoding"] == "gzip"
        events = EventStream(response)
        name, hydration = events.next_event()
        assert name == "unleash-connected"
        [features] = [e["features"] for e in hydration["events"] if e["type"] == "hydration"]
        assert [f["enabled"] for f in features if f["name"] == "app.checkout"] == [True]

        flag_toggle(actor=ACTOR, flag=flag, enabled=False)

        name, update = events.next_event()  # on the same, still open connection
        assert name == "unleash-updated"
        [event] = update["events"]
        assert (event["feature"]["name"], event["feature"]["enabled"]) == ("app.checkout", False)
    finally:
        response.close()
    [served] = [s for s in asgi_served if s.path == STREAMING_PATH]
    assert served.headers["content-encoding"] == "gzip"


def test_stream_events__one_event_per_pair_of_bodies_bounded() -> None:
    """The update event of a move between two bodies is made once however many connections
    make it, and only the most recently used pairs are kept."""
    made: list[tuple[str, str]] = []
    events = StreamEvents(size=2)
    bodies = [Snapshot(revision, b"{}", f'"{revision}-x"') for revision in range(4)]

    def get(old: Snapshot, new: Snapshot) -> bytes | None:
        def make() -> bytes:
            made.append((old.etag, new.etag))
            return f"event: unleash-updated\nid: {new.revision}\ndata: {{}}\n\n".encode()

        event = events.get("stream", old, new, make)
        assert event.coded(True) == event.coded(True)  # the member built once, then kept
        return event.coded(False)

    for _ in range(3):  # three connections making the same move
        get(bodies[0], bodies[1])
    assert made == [('"0-x"', '"1-x"')]
    get(bodies[1], bodies[2])
    get(bodies[2], bodies[3])  # the third pair: the least recently used (0 -> 1) goes
    get(bodies[0], bodies[1])
    assert len(made) == 4
    assert zlib.decompress(events.get("stream", bodies[0], bodies[1], bytes).coded(True), 31) == (
        b"event: unleash-updated\nid: 1\ndata: {}\n\n"
    )
