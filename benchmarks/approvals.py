"""Approvals: the machine part of the approval round trip, through the real server (uvicorn,
fast path, PostgreSQL, Redis pub/sub), in both directions:

- **created -> visible**: runtimes open requests (``POST /api/runtime/v1/approvals``, 4 at a
  time) while an approver-side client lists the inbox's data (``GET
  /api/v1/approvals/?status=pending``, the operator API, with the approver's API token) in a
  tight loop; time from the POST's 201 until a list answer holds the request (so it includes
  up to two list answers' time, ``approval_inbox_list``). Each request is cancelled once
  seen: the inbox holds a few waiting (one per runtime at most), not 200.
- **decision saved -> runtime woken**: ``--waiters`` requests at a time, each held by a
  runtime long-polling ``GET …/approvals/{id}?wait=30``; an approver decides them one after
  another through ``approval_decide`` in this process (so the wake crosses Redis, as when
  the inbox's web process decides and another holds the long-poll); time from the service's
  return (the decision committed) until the long-poll's answer arrives.
- **the anchor, in the same run**: the same, the runtimes polling ``GET …/approvals/{id}``
  every second instead (batches alternate with the long-poll's, so both meet the same load).

    python -m benchmarks.approvals [--requests 200] [--waiters 50] [--workers 2]

Prints ``NAME: VALUE UNIT`` figures and ``ratio.approval_wake_p99_vs_1s_polling`` (polling's
p99 over the long-poll's; above 1.0: we do better). Goal (issue 14): p99 <= 1 s each way.
``BENCH_DB`` and ``BENCH_REDIS_URL`` choose the database (dropped and recreated) and Redis."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11

from ._harness import emit, emit_ratio, fresh_database, log, server, setup_django

OPEN = "/api/runtime/v1/approvals"
READ = "/api/runtime/v1/approvals/{id}"
CANCEL = "/api/runtime/v1/approvals/{id}/cancel"
INBOX = "/api/v1/approvals/?status=pending"
POSTERS = 4  # runtimes opening requests at once in the created -> visible part
LONG_POLL_S = 30  # what the reference runtime asks for (docs/approvals.md)
POLL_INTERVAL_S = 1.0  # the anchor: a runtime polling every second
GOAL_S = 1.0

# The refund agent's contract: one tool that asks for approval, one sensitive argument (the
# runtime sends it redacted, hashed in full).
CONTRACT: dict[str, Any] = {
    "description": "Issues refunds.",
    "model": {"provider": "openai", "name": "gpt-4o-mini"},
    "prompts": {"system": {"role": "system", "template": "You issue refunds when allowed."}},
    "tools": [
        {
            "name": "issue_refund",
            "description": "Refund an order.",
            "risk": "write",
            "requires_approval": True,
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "amount": {"type": "number"},
                    "card_number": {"type": "string"},
                },
                "required": ["order_id", "amount"],
            },
            "sensitive_args": ["card_number"],
        }
    ],
    "policies": {
        "tool_rules": [{"tool": "issue_refund", "action": "ask"}],
        "limits": {
            "max_steps": 6,
            "max_tool_calls": 4,
            "max_total_tokens": 12000,
            "max_cost_usd": 0.5,
            "max_retries_per_tool": 1,
        },
    },
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); ``argv`` None reads ``sys.argv``."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.approvals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--requests", type=int, default=200, help="requests measured each way")
    ap.add_argument(
        "--waiters", type=int, default=50, help="runtimes waiting at once for a decision"
    )
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    args = ap.parse_args(argv)
    if args.requests < 1 or args.waiters < 1 or args.workers < 1:
        ap.error("--requests, --waiters and --workers are at least 1")
    return args


@dataclass(frozen=True)
class Seeded:
    """What ``seed`` made: the runtime token and the approver's API key (both raw), and the
    approver's user id."""

    runtime_token: str
    api_key: str
    approver_id: int


def seed() -> Seeded:
    """A tenant with the refund agent deployed in production, a runtime token, an approver
    (role Approver, access to the tenant, an API token) and the queue "Refunds" they decide."""
    from apps.accounts.runtime_tokens import runtime_token_create
    from apps.accounts.services import api_token_rotate, user_create, user_grant_tenant
    from apps.approvals.services import queue_create
    from apps.audit.services import SystemActor
    from apps.bundles.services import bundle_version_push
    from apps.core.roles import Role
    from apps.rollouts.services.deployments import deployment_create
    from apps.tenancy.services import agent_create, tenant_create

    actor = SystemActor("benchmark")
    tenant = tenant_create(actor=actor, slug="bench", name="Bench")
    production = tenant.environments.get(slug="production")
    agent = agent_create(actor=actor, tenant=tenant, slug="refund-agent", name="Refund agent")
    version = bundle_version_push(
        actor=actor, agent=agent, content=CONTRACT, message="benchmark"
    ).version
    deployment_create(
        actor=actor, agent=agent, environment=production, version=version, reason="benchmark"
    )
    raw = runtime_token_create(actor=actor, tenant=tenant, environment=production, name="bench")[1]
    approver, _ = user_create(actor=actor, username="bench-approver", role=Role.APPROVER)
    user_grant_tenant(actor=actor, user=approver, tenant=tenant)
    queue_create(
        actor=actor,
        tenant=tenant,
        data={
            "name": "Refunds",
            "match_tools": ["issue_refund"],
            "timeout_s": 3600,
            "sla_s": 600,
            "max_open_per_session": 1000,
            "approvers": [approver],
        },
    )
    return Seeded(raw, api_token_rotate(actor=actor, user=approver), approver.pk)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Http:
    """One keep-alive HTTP/1.1 connection (h11 over asyncio streams): what a runtime or an
    approver's browser holds. ``request`` reconnects after the server closed it."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = [("Host", f"{self.host}:{self.port}"), *headers.items()]
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.conn = h11.Connection(h11.CLIENT)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """Send one request; returns (status, decoded JSON body or None)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.conn = h11.Connection(h11.CLIENT)
        assert self.reader is not None
        payload = json.dumps(body).encode() if body is not None else b""
        headers = list(self.headers)
        if body is not None:
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        out = self.conn.send(h11.Request(method=method, target=path, headers=headers)) or b""
        if payload:
            out += self.conn.send(h11.Data(data=payload)) or b""
        out += self.conn.send(h11.EndOfMessage()) or b""
        try:
            self.writer.write(out)
            status, chunks = 0, []
            while True:
                event = self.conn.next_event()
                if event is h11.NEED_DATA:
                    self.conn.receive_data(await self.reader.read(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionError("closed by the server")
        except (OSError, h11.ProtocolError):
            await self.close()
            raise
        if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
            await self.close()
        else:
            self.conn.start_next_cycle()
        data = b"".join(chunks)
        return status, json.loads(data) if data else None


def request_body(n: int, prefix: str) -> dict[str, Any]:
    """A runtime's request for call ``n``: the card number redacted, the hash over the full
    arguments, one session per call (no session limit in the way)."""
    from dataplane.canonical import digest

    full = {"order_id": f"A-{n:05d}", "amount": 10 + n % 90, "card_number": "4111111111111111"}
    return {
        "idempotency_key": f"{prefix}-{n}",
        "agent": "refund-agent",
        "tool": "issue_refund",
        "arguments": {**full, "card_number": "[redacted]"},
        "arguments_sha256": digest(full),
        "reason": f"The customer was charged twice for order A-{n:05d}.",
        "excerpt": [
            {"role": "user", "content": "I was charged twice for my order!"},
            {"role": "assistant", "content": "I can refund the second charge once approved."},
        ],
        "session_id": f"{prefix}-s{n}",
        "rule": "rule #1 (ask issue_refund)",
    }


async def open_request(http: Http, n: int, prefix: str) -> tuple[int, float]:
    """Open request ``n``; returns its id and when the 201 arrived (perf_counter)."""
    status, answer = await http.request("POST", OPEN, request_body(n, prefix))
    if status != 201:
        raise RuntimeError(f"opening a request answered {status}: {answer}")
    return int(answer["id"]), time.perf_counter()


def _listed_ids(answer: Any) -> list[int]:
    rows = answer.get("results", []) if isinstance(answer, dict) else answer
    return [int(row["id"]) for row in rows or []]


async def measure_visible(
    base: str, seeded: Seeded, count: int
) -> tuple[list[float], list[float], int]:
    """Created -> visible for ``count`` requests (see the module docstring). Returns the
    delays (s), the inbox list's own answer times (s) and how many were never seen (30 s)."""
    created: dict[int, float] = {}
    seen: dict[int, float] = {}
    arrived: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)
    list_times: list[float] = []
    missed = 0
    done = asyncio.Event()

    async def approver() -> None:
        inbox = Http(base, {"Authorization": f"Token {seeded.api_key}"})
        while not done.is_set():
            started = time.perf_counter()
            status, answer = await inbox.request("GET", INBOX)
            now = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"the inbox list answered {status}: {answer}")
            list_times.append(now - started)
            for pk in _listed_ids(answer):
                if pk not in seen:
                    seen[pk] = now
                    arrived[pk].set()
        await inbox.close()

    async def runtime(numbers: range) -> None:
        nonlocal missed
        http = Http(base, {"Authorization": f"Bearer {seeded.runtime_token}"})
        for n in numbers:
            pk, at = await open_request(http, n, "visible")
            created[pk] = at
            listed = asyncio.create_task(arrived[pk].wait())
            await asyncio.wait({listed, watcher}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            listed.cancel()
            if watcher.done():  # the inbox client failed: say why rather than wait it out
                watcher.result()
                raise RuntimeError("the inbox client stopped")
            missed += pk not in seen
            status, answer = await http.request("POST", CANCEL.format(id=pk), {})
            if status != 200:
                raise RuntimeError(f"cancelling answered {status}: {answer}")
            await asyncio.sleep(random.uniform(0, 0.1))
        await http.close()

    watcher = asyncio.create_task(approver())
    per = -(-count // POSTERS)
    await asyncio.gather(
        *(runtime(range(i * per, min(count, (i + 1) * per))) for i in range(POSTERS))
    )
    done.set()
    await watcher
    delays = [seen[pk] - created[pk] for pk in created if pk in seen]
    return delays, list_times, missed


def _decide_all(ids: list[int], approver_id: int, committed: dict[int, float]) -> None:
    """The approver deciding ``ids`` one after another (in this order), a few tens of ms
    apart, each through the service; ``committed[id]``: when the service returned."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from apps.approvals.models import ApprovalRequest
    from apps.approvals.services import approval_decide

    user = get_user_model().objects.get(pk=approver_id)
    try:
        for pk in ids:
            request = ApprovalRequest.objects.get(pk=pk)
            approval_decide(actor=user, request=request, choice="approve", comment="ok")
            committed[pk] = time.perf_counter()
            time.sleep(random.uniform(0, 0.05))
    finally:
        connection.close()


async def measure_wake(
    base: str, seeded: Seeded, ids: list[int], mode: str, decider: ThreadPoolExecutor
) -> tuple[list[float], int]:
    """Decision -> runtime woken for ``ids`` (all pending), one runtime per request, in
    ``mode`` "longpoll" (``?wait=30``) or "poll" (every ``POLL_INTERVAL_S``). Returns the
    delays (s) and how many runtimes never saw their decision (60 s)."""
    woken: dict[int, float] = {}
    committed: dict[int, float] = {}

    async def runtime(pk: int) -> None:
        http = Http(base, {"Authorization": f"Bearer {seeded.runtime_token}"})
        path = READ.format(id=pk)
        if mode == "poll":
            await asyncio.sleep(random.uniform(0, POLL_INTERVAL_S))  # a fleet's random phase
        while True:
            status, answer = await http.request(
                "GET", f"{path}?wait={LONG_POLL_S}" if mode == "longpoll" else path
            )
            if status != 200:
                raise RuntimeError(f"reading #{pk} answered {status}: {answer}")
            if answer["status"] != "pending":
                woken[pk] = time.perf_counter()
                break
            if mode == "poll":
                await asyncio.sleep(POLL_INTERVAL_S)
        await http.close()

    tasks = [asyncio.create_task(runtime(pk)) for pk in ids]
    await asyncio.sleep(1.0 + POLL_INTERVAL_S)  # every long-poll held, every poller polling
    order = random.sample(ids, len(ids))
    await asyncio.get_running_loop().run_in_executor(
        decider, _decide_all, order, seeded.approver_id, committed
    )
    _, late = await asyncio.wait(tasks, timeout=60)
    for task in late:
        task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            raise error
    return [woken[pk] - committed[pk] for pk in ids if pk in woken], len(late)


async def open_batch(base: str, seeded: Seeded, numbers: range, prefix: str) -> list[int]:
    """Open requests ``numbers`` (4 runtimes at a time); returns their ids."""
    ids: list[int] = []

    async def runtime(part: range) -> None:
        http = Http(base, {"Authorization": f"Bearer {seeded.runtime_token}"})
        for n in part:
            ids.append((await open_request(http, n, prefix))[0])
        await http.close()

    step = -(-len(numbers) // POSTERS)
    await asyncio.gather(
        *(runtime(numbers[i : i + step]) for i in range(0, len(numbers), step) if step)
    )
    return ids


@dataclass
class Results:
    visible: list[float]
    inbox_list: list[float]
    visible_missed: int
    wake: dict[str, list[float]]
    wake_missed: dict[str, int]


async def run(base: str, seeded: Seeded, requests: int, waiters: int) -> Results:
    """Both directions and the anchor against the server at ``base``."""
    log(f"created -> visible: {requests} requests, {POSTERS} runtimes, the inbox list polled")
    visible, inbox_list, visible_missed = await measure_visible(base, seeded, requests)
    wake: dict[str, list[float]] = {"longpoll": [], "poll_1s": []}
    missed = {"longpoll": 0, "poll_1s": 0}
    decider = ThreadPoolExecutor(max_workers=1, thread_name_prefix="approver")
    try:
        done = 0
        while done < requests:
            size = min(waiters, requests - done)
            for label, mode in (("longpoll", "longpoll"), ("poll_1s", "poll")):
                log(f"decision -> woken, {label}: requests {done + 1}-{done + size}")
                ids = await open_batch(base, seeded, range(done, done + size), f"wake-{label}")
                delays, late = await measure_wake(base, seeded, ids, mode, decider)
                wake[label] += delays
                missed[label] += late
            done += size
    finally:
        decider.shutdown()
    return Results(visible, inbox_list, visible_missed, wake, missed)


def _figures(name: str, delays: list[float]) -> None:
    if not delays:
        emit(f"{name}.samples", 0)
        return
    emit(f"{name}.p50", round(statistics.median(delays) * 1000, 1), "ms")
    emit(f"{name}.p99", round(percentile(delays, 0.99) * 1000, 1), "ms")
    emit(f"{name}.max", round(max(delays) * 1000, 1), "ms")
    emit(f"{name}.samples", len(delays))


def report(results: Results, *, waiters: int) -> None:
    """Print the figures (``NAME: VALUE UNIT``) and the ratio."""
    _figures("approval_visible", results.visible)
    emit("approval_visible.missed", results.visible_missed, "(not listed within 30 s)")
    emit(
        "approval_inbox_list.p50",
        round(statistics.median(results.inbox_list) * 1000, 1) if results.inbox_list else 0,
        f"ms (one GET {INBOX}, {len(results.inbox_list)} made)",
    )
    emit("approval_wake.waiters", waiters, "runtimes waiting at once")
    for label, delays in results.wake.items():
        _figures(f"approval_wake.{label}", delays)
        emit(f"approval_wake.{label}.missed", results.wake_missed[label], "(not woken in 60 s)")
    ours, theirs = results.wake["longpoll"], results.wake["poll_1s"]
    if ours and theirs:
        emit_ratio(
            "approval_wake_p99_vs_1s_polling", percentile(theirs, 0.99) / percentile(ours, 0.99)
        )
    for name, delays, missed in (
        ("approval_visible", results.visible, results.visible_missed),
        ("approval_wake", ours, results.wake_missed["longpoll"]),
    ):
        met = bool(delays) and not missed and percentile(delays, 0.99) <= GOAL_S
        emit(f"{name}.goal_p99_under_1s", "met" if met else "missed")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # One token for every simulated runtime: lift its per-minute request limit.
    os.environ["RUNTIME_TOKEN_REQUESTS_PER_MINUTE"] = str(10**8)
    log("fresh database")
    fresh_database()
    setup_django()
    seeded = seed()
    random.seed(2026)
    # The web process as docker-compose.yml runs it (WEB_CONCURRENCY workers, pooled
    # connections); Redis is on (the harness's REDIS_URL), so events cross processes by pub/sub.
    production = {"CONN_MAX_AGE": "0", "DATABASE_POOL": "true"}
    with server(workers=args.workers, env=production) as base:
        results = asyncio.run(run(base, seeded, args.requests, args.waiters))
    report(results, waiters=args.waiters)


if __name__ == "__main__":
    main()
