"""A fleet of lightweight simulated runtimes in one asyncio process (the load generator runs
apart from the server). Each keeps one keep-alive connection and either long-polls
(``?wait=30`` + If-None-Match) or polls every ``--interval`` seconds with its ETag.

Protocol: on stdin the benchmark writes ``<revision>`` lines (a change it just committed); for
each, this process prints ``result <revision> <json list of seconds from commit to applied>``
once every runtime has applied it (or after --timeout). ``ready`` is printed once every
runtime holds its first snapshot. The commit time is read from ``<revision> <unix time>``."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from urllib.parse import urlsplit


class Runtime:
    def __init__(self, host: str, port: int, path: str, token: str) -> None:
        self.host, self.port, self.path, self.token = host, port, path, token
        self.etag = ""
        self.revision = 0
        self.applied_at: dict[int, float] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def fetch(self, wait: float) -> None:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        query = f"?wait={wait:g}" if wait else ""
        request = (
            f"GET {self.path}{query} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: {self.token}\r\n"
            + (f"If-None-Match: {self.etag}\r\n" if self.etag else "")
            + "\r\n"
        )
        self.writer.write(request.encode())
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length, etag = 0, ""
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "etag":
                etag = value.strip()
        body = await self.reader.readexactly(length) if length else b""
        if status == 200:
            # Applying = parsing the snapshot and taking its revision, as a runtime would.
            document = json.loads(body)
            snapshot = document.get("snapshot", document)
            self.revision = int(snapshot["revision"])
            self.etag = etag
            self.applied_at.setdefault(self.revision, time.time())
        elif status != 304:
            raise RuntimeError(f"unexpected HTTP {status}")

    async def run(self, mode: str, interval: float) -> None:
        while True:
            try:
                if mode == "longpoll":
                    await self.fetch(wait=30)
                else:
                    await self.fetch(wait=0)
                    await asyncio.sleep(interval)
            except (ConnectionError, OSError, asyncio.IncompleteReadError):
                self.writer = None
                await asyncio.sleep(0.2 + random.random())


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--mode", choices=["longpoll", "poll"], default="longpoll")
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()
    parts = urlsplit(args.url)
    runtimes = [
        Runtime(parts.hostname or "127.0.0.1", parts.port or 80, parts.path, args.token)
        for _ in range(args.n)
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
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and not all(
            any(rev >= revision for rev in r.applied_at) for r in runtimes
        ):
            await asyncio.sleep(0.01)
        delays = []
        for r in runtimes:
            times = [t for rev, t in r.applied_at.items() if rev >= revision]
            delays.append(round(min(times) - committed, 4) if times else None)
        print(f"result {revision} {json.dumps(delays)}", flush=True)
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
