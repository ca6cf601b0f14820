"""A fleet of lightweight simulated runtimes in one asyncio process (the load generator runs
apart from the server). Each keeps one keep-alive connection and either long-polls
(``?wait=30`` + If-None-Match) or polls every ``--interval`` seconds with its ETag.

Built to hold 10,000 runtimes on one core: uvloop (the server's loop too), the open-files limit
raised to its hard limit, connections opened 100 at a time, answers parsed by an
``asyncio.Protocol`` where the bytes arrive (``Answer``), and a runtime reads the whole body
but takes the revision from the ``X-Revision`` header (parsing a 33 kB snapshot ten thousand
times would measure this process's CPU, not the server; a real runtime parses on its own CPU),
and completion is counted
as runtimes apply a change instead of scanning the fleet. Bodies are asked for gzip-encoded
(``--accept-encoding``), as a real runtime would.

Runtime tokens come from the ``FLEET_TOKENS`` environment variable (comma-separated; runtime i
uses token i mod count), never from the command line (``ps`` shows arguments).

Protocol: on stdin the benchmark writes ``<revision> <unix time of commit>`` lines (a change it
just committed); for each, this process prints ``result <revision> <json>`` once every runtime
has applied it (or after --timeout), the JSON being ``{"delays": [seconds or null, …],
"cpu_s": …, "wall_s": …, "errors": {status: count}}`` with this process's own CPU time over
that wait, so a reader can tell when the client, not the server, was the limit. ``ready`` is
printed once every runtime holds its first document."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import random
import resource
import sys
import time
from urllib.parse import urlsplit

import uvloop


class UnexpectedStatus(Exception):
    """An answer other than 200 or 304 (counted in ``Fleet.errors``; the runtime retries)."""


class Fleet:
    """Counts the runtimes that have applied the revision being waited for."""

    def __init__(self) -> None:
        self.errors: dict[int, int] = {}
        self.target = 0
        self.remaining = 0
        self.done = asyncio.Event()

    def expect(self, revision: int, runtimes: list[Runtime]) -> None:
        self.target = revision
        self.remaining = sum(1 for r in runtimes if r.revision < revision)
        self.done = asyncio.Event()
        if self.remaining == 0:
            self.done.set()

    def applied(self, before: int, now: int) -> None:
        if self.target and before < self.target <= now:
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()


class Answer(asyncio.Protocol):
    """One keep-alive connection's answers, parsed where the bytes arrive: the status line
    and the three headers a runtime reads (``Content-Length``, ``ETag``, ``X-Revision``) by
    byte search, the body by its length; each whole answer resolves ``pending``. (A
    ``StreamReader`` costs an await per header line: ten thousand answers of a dozen lines
    made this process, not the server, the limit.)"""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending: asyncio.Future[tuple[int, str, int | None, bytes]] | None = None
        self.head: tuple[int, str, int | None, int, int] | None = None  # parsed, body to come
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self._one():
            pass

    def _one(self) -> bool:
        buffer = self.buffer
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = bytes(buffer[:end]).split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, etag, revision = 0, "", None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"etag":
                    etag = value.strip().decode("latin-1")
                elif name == b"x-revision":
                    revision = int(value)
            self.head = (status, etag, revision, end + 4, length)
        status, etag, revision, start, length = self.head
        if len(buffer) < start + length:
            return False
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self.head = None
        if self.pending is not None and not self.pending.done():
            self.pending.set_result((status, etag, revision, body))
        return bool(buffer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True  # the next fetch connects again (an idle connection the server shut)
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(ConnectionError("closed"))


class Runtime:
    def __init__(
        self, fleet: Fleet, host: str, port: int, path: str, token: str, accept_encoding: str
    ) -> None:
        self.fleet = fleet
        self.host, self.port, self.path, self.token = host, port, path, token
        self.accept_encoding = accept_encoding
        self.etag = ""
        self.revision = 0
        self.applied_at: dict[int, float] = {}
        self.connection: Answer | None = None

    async def _connect(self) -> Answer:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(Answer, self.host, self.port)
        return protocol

    def close(self) -> None:
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.close()
        self.connection = None

    async def fetch(self, wait: float) -> None:
        if self.connection is None or self.connection.closed:
            self.connection = await self._connect()
        connection = self.connection
        assert connection.transport is not None
        query = f"?wait={wait:g}" if wait else ""
        request = (
            f"GET {self.path}{query} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: {self.token}\r\n"
            + (f"Accept-Encoding: {self.accept_encoding}\r\n" if self.accept_encoding else "")
            + (f"If-None-Match: {self.etag}\r\n" if self.etag else "")
            + "\r\n"
        )
        connection.pending = asyncio.get_running_loop().create_future()
        connection.transport.write(request.encode())
        status, etag, revision, body = await connection.pending
        if status == 200:
            if revision is None:  # a server without the header: parse, as a runtime would
                document = json.loads(gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body)
                revision = int(document.get("snapshot", document)["revision"])
            before, self.revision = self.revision, revision
            self.etag = etag
            self.applied_at.setdefault(revision, time.time())
            self.fleet.applied(before, revision)
        elif status != 304:
            self.fleet.errors[status] = self.fleet.errors.get(status, 0) + 1
            raise UnexpectedStatus(status)

    async def run(self, mode: str, interval: float) -> None:
        while True:
            try:
                if mode == "longpoll":
                    await self.fetch(wait=30)
                else:
                    await self.fetch(wait=0)
                    await asyncio.sleep(interval)
            except (ConnectionError, OSError, UnexpectedStatus):
                # as a runtime would: drop the connection, back off a little, ask again
                self.close()
                await asyncio.sleep(0.2 + random.random())


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--mode", choices=["longpoll", "poll"], default="longpoll")
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--accept-encoding", default="gzip")
    args = ap.parse_args()
    tokens = [t for t in os.environ.get("FLEET_TOKENS", "").split(",") if t]
    if not tokens:
        raise SystemExit("FLEET_TOKENS is empty")
    _raise_open_files_limit()
    parts = urlsplit(args.url)
    fleet = Fleet()
    runtimes = [
        Runtime(
            fleet,
            parts.hostname or "127.0.0.1",
            parts.port or 80,
            parts.path,
            tokens[i % len(tokens)],
            args.accept_encoding,
        )
        for i in range(args.n)
    ]
    # Initial fetches, a few at a time, then each runtime's loop starts at a random phase of
    # its polling interval (as a real fleet's would be).
    sem = asyncio.Semaphore(100)

    async def first(runtime: Runtime) -> None:
        async with sem:
            await runtime.fetch(wait=0)

    await asyncio.gather(*(first(r) for r in runtimes))

    async def start(runtime: Runtime) -> None:
        if args.mode == "poll":
            await asyncio.sleep(random.uniform(0, args.interval))
        await runtime.run(args.mode, args.interval)

    tasks = [asyncio.create_task(start(r)) for r in runtimes]
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        revision_s, committed_s = line.decode().split()
        revision, committed = int(revision_s), float(committed_s)
        cpu_before, wall_before = _cpu_s(), time.monotonic()
        fleet.expect(revision, runtimes)
        with contextlib.suppress(TimeoutError):  # the report says who missed it
            await asyncio.wait_for(fleet.done.wait(), args.timeout)
        delays = []
        for r in runtimes:
            times = [t for rev, t in r.applied_at.items() if rev >= revision]
            delays.append(round(min(times) - committed, 4) if times else None)
        report = {
            "delays": delays,
            "cpu_s": round(_cpu_s() - cpu_before, 3),
            "wall_s": round(time.monotonic() - wall_before, 3),
            "errors": fleet.errors,
        }
        fleet.errors = {}
        print(f"result {revision} {json.dumps(report)}", flush=True)
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    uvloop.run(main())  # the loop the server runs on too (uvicorn --loop uvloop)
