"""Ingest: request records per second through ``POST /api/runtime/v1/records`` (4 concurrent
clients sending batches of 500) beside ``COPY`` of the same rows into the same table in the
same run (4 connections, one ``COPY`` per batch of 500, committed as the API commits: the
practical limit; the two take turns, ``ROUNDS`` times, so both meet the same load on a shared
machine); and the bucket
path: 1,000 simulated runtimes each sending its 10-second buckets (stable and candidate, with
DDSketches) once per 10 s of fleet time, sent as fast as the server takes them.

    python -m benchmarks.ingest [--records 90000] [--periods 6] [--workers 2]
                                [--runtime-rps 50]

Prints ``NAME: VALUE UNIT`` figures and ``ratio.ingest_records_vs_copy`` (goal >= 0.33).
``ingest_buckets_fleet`` is the fleet traffic the bucket path keeps up with: bucketed
requests per second of wall time, each runtime serving ``--runtime-rps`` requests/s; it
scales with that assumption, ``ingest_buckets_posts`` (bucket POSTs/s) does not. Set
``BENCH_DB`` to keep the benchmark's database apart from other runs. The web process runs as
``docker-compose.yml`` runs it (``WEB_CONCURRENCY`` 2 uvicorn workers, ``CONN_MAX_AGE=0``,
``DATABASE_POOL`` on)."""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._harness import emit, emit_ratio, fresh_database, log, server, setup_django

CLIENTS = 4
BATCH = 500
RUNTIMES = 1000
ROUNDS = 3


def seed() -> tuple[str, int, int, int]:
    """A tenant, its production environment, two agents; a runtime token. Returns the raw
    token and the tenant, environment and agent ids."""
    from apps.accounts.runtime_tokens import runtime_token_create
    from apps.audit.services import SystemActor
    from apps.tenancy.services import agent_create, tenant_create

    actor = SystemActor("benchmark")
    tenant = tenant_create(actor=actor, slug="bench", name="Bench")
    production = tenant.environments.get(slug="production")
    agent = agent_create(actor=actor, tenant=tenant, slug="support-bot", name="support-bot")
    agent_create(actor=actor, tenant=tenant, slug="refund-agent", name="refund-agent")
    raw = runtime_token_create(actor=actor, tenant=tenant, environment=production, name="bench")[1]
    return raw, tenant.pk, production.pk, agent.pk


def make_records(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Records of the last hour in the order they happened (as runtimes send them: a batch
    covers a few seconds), two versions, mostly successes."""
    now = datetime.now(UTC)
    step = 3600 / max(1, count)
    digests = ["a" * 64, "b" * 64]
    records = []
    for i in range(count):
        candidate = rng.random() < 0.2
        outcome = rng.choices(
            ["success", "error", "policy_denied", "escalated"], weights=[90, 5, 3, 2]
        )[0]
        records.append(
            {
                "request_id": uuid.uuid4().hex,
                "agent": "support-bot",
                "session_id": f"s-{rng.randrange(20000)}",
                "end_user_hash": f"{rng.getrandbits(128):032x}",
                "version_digest": digests[candidate],
                "variant": "candidate" if candidate else "stable",
                "started_at": (now - timedelta(seconds=3601 - i * step)).isoformat(),
                "latency_ms": int(rng.lognormvariate(6, 0.8)),
                "steps": rng.randrange(1, 8),
                "tool_calls": rng.randrange(0, 5),
                "tool_failures": 0,
                "tokens_in": rng.randrange(200, 4000),
                "tokens_out": rng.randrange(20, 800),
                "cost_usd": str(Decimal(rng.randrange(1, 5000)) / Decimal(100000)),
                "model": "gpt-x",
                "outcome": outcome,
                "error_code": "" if outcome == "success" else outcome,
                "trace_id": f"{rng.getrandbits(128):032x}",
                "quality_score": round(rng.random(), 3),
                "feedback": {"thumbs": rng.choice(["up", "down"]), "score": 0.5}
                if i % 20 == 0
                else None,
            }
        )
    return records


def post_all(base: str, token: str, bodies: list[bytes], clients: int) -> tuple[float, int]:
    """POST every body, ``clients`` at a time (one keep-alive connection each). Returns the
    wall time and how many answers were not 200."""
    parts = urlsplit(base)
    queue = list(reversed(bodies))
    lock = threading.Lock()
    failures = [0]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            conn.request("POST", "/api/runtime/v1/records", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                with lock:
                    failures[0] += 1
                    if failures[0] <= 3:
                        log(f"answer {response.status}: {payload[:300]!r}")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, failures[0]


def copy_rows(
    records: list[dict[str, Any]], tenant_id: int, environment_id: int, agent_id: int
) -> float:
    """COPY the same rows into the raw table: CLIENTS connections, one COPY (and commit) per
    batch of BATCH rows. Returns the wall time."""
    import psycopg
    from django.conf import settings

    from apps.telemetry.services import partitions_ensure

    partitions_ensure(
        {datetime.fromisoformat(r["started_at"]).astimezone(UTC).date() for r in records}
    )
    columns = (
        "tenant_id, environment_id, agent_id, request_id, session_id, end_user_hash, "
        "version_digest, variant, started_at, latency_ms, steps, tool_calls, tool_failures, "
        "wrong_actions, "
        "tokens_in, tokens_out, cost_usd, model, outcome, error_code, trace_id, "
        "feedback_thumbs, feedback_score, quality_score"
    )

    def line(r: dict[str, Any]) -> str:
        feedback = r.get("feedback") or {}
        values = [
            tenant_id,
            environment_id,
            agent_id,
            r["request_id"],
            r["session_id"],
            r["end_user_hash"],
            r["version_digest"],
            r["variant"],
            r["started_at"],
            r["latency_ms"],
            r["steps"],
            r["tool_calls"],
            r["tool_failures"],
            r.get("wrong_actions", 0),
            r["tokens_in"],
            r["tokens_out"],
            r["cost_usd"],
            r["model"],
            r["outcome"],
            r["error_code"],
            r["trace_id"],
            feedback.get("thumbs"),
            feedback.get("score"),
            r["quality_score"],
        ]
        return "\t".join("\\N" if v is None else str(v) for v in values) + "\n"

    payloads = [
        "".join(line(r) for r in records[i : i + BATCH]).encode()
        for i in range(0, len(records), BATCH)
    ]
    url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    synchronous = settings.TELEMETRY_SYNCHRONOUS_COMMIT
    queue = list(reversed(payloads))
    lock = threading.Lock()

    def worker() -> None:
        with psycopg.connect(url) as conn:
            while True:
                with lock:
                    if not queue:
                        break
                    data = queue.pop()
                sql = f"COPY telemetry_requestrecord ({columns}) FROM STDIN"
                with conn.cursor() as cursor:
                    if not synchronous:  # commit as the product's ingest commits
                        cursor.execute("SET LOCAL synchronous_commit TO off")
                    with cursor.copy(sql) as cp:
                        cp.write(data)
                conn.commit()

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def make_bucket_bodies(
    periods: int, runtime_rps: float, rng: random.Random
) -> tuple[list[bytes], int]:
    """One body per runtime and 10-second period: a stable and a candidate bucket (90/10) of
    ``runtime_rps * 10`` requests with their DDSketch. Returns the bodies and the requests they
    represent."""
    from apps.telemetry.sketches import sketch_of, sketch_to_bytes

    per_bucket = int(runtime_rps * 10)
    split = {"stable": per_bucket - per_bucket // 10, "candidate": per_bucket // 10}
    pool: dict[str, list[tuple[str, int]]] = {}
    for variant, count in split.items():
        pool[variant] = []
        for _ in range(20):  # a pool of sketches, reused: generating 12,000 would dominate
            latencies = [int(rng.lognormvariate(6, 0.8)) for _ in range(count)]
            pool[variant].append(
                (base64.b64encode(sketch_to_bytes(sketch_of(latencies))).decode(), sum(latencies))
            )
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10 * (periods + 1))
    first = first.replace(second=first.second - first.second % 10)
    bodies = []
    total = 0
    for period in range(periods):
        start = (first + timedelta(seconds=10 * period)).isoformat()
        for runtime in range(RUNTIMES):
            buckets = []
            for variant, count in split.items():
                sketch, latency_sum = rng.choice(pool[variant])
                errors = count // 50
                buckets.append(
                    {
                        "bucket_start": start,
                        "agent": "support-bot",
                        "version_digest": ("b" if variant == "candidate" else "a") * 64,
                        "variant": variant,
                        "count_success": count - errors,
                        "count_error": errors,
                        "latency_sketch": sketch,
                        "latency_sum_ms": latency_sum,
                        "tokens_in": count * 1500,
                        "tokens_out": count * 300,
                        "cost_usd": str(Decimal(count) * Decimal("0.004")),
                        "tool_calls": count * 2,
                    }
                )
                total += count
            bodies.append(
                json.dumps({"instance_id": f"rt-{runtime:04d}", "buckets": buckets}).encode()
            )
    return bodies, total


def peak_rss_kib(pid: int) -> int:
    """Peak resident set (VmHWM) of a process and its children (uvicorn's workers), KiB."""
    total = 0
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    for each in [pid, *map(int, children)]:
        try:
            for row in Path(f"/proc/{each}/status").read_text().splitlines():
                if row.startswith("VmHWM:"):
                    total += int(row.split()[1])
        except OSError:
            continue
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=90_000, help="records sent (and copied)")
    ap.add_argument("--periods", type=int, default=6, help="10 s periods of fleet buckets")
    ap.add_argument("--runtime-rps", type=float, default=50.0, help="requests/s per runtime")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    args = ap.parse_args()
    os.environ.setdefault("BENCH_DB", "controlplane_bench_ingest")
    # One token for the whole benchmark fleet: lift its per-minute request limit.
    os.environ["RUNTIME_TOKEN_REQUESTS_PER_MINUTE"] = str(10**8)
    log("fresh database")
    fresh_database()
    setup_django()
    token, tenant_id, environment_id, agent_id = seed()
    rng = random.Random(2026)
    records = make_records(args.records, rng)
    bodies = [
        json.dumps({"records": records[i : i + BATCH]}).encode()
        for i in range(0, len(records), BATCH)
    ]
    warmup = [
        json.dumps({"records": make_records(BATCH, rng)}).encode() for _ in range(CLIENTS * 2)
    ]
    bucket_bodies, bucket_requests = make_bucket_bodies(args.periods, args.runtime_rps, rng)
    pids: list[int] = []
    # The web process as docker-compose.yml runs it: Django's requests under ASGI each run in
    # a thread of their own, so no persistent connections (CONN_MAX_AGE=0, .env.example) but
    # the pool the compose file turns on for the web service (DATABASE_POOL).
    production = {"CONN_MAX_AGE": "0", "DATABASE_POOL": "true"}
    with server(workers=args.workers, pids=pids, env=production) as base:
        log("warm-up")
        post_all(base, token, warmup, CLIENTS)
        # The machine is shared: the API and COPY take turns on the same slices of the rows
        # (ROUNDS of each, interleaved), so both meet the same load; the rates are totals.
        per_round = -(-len(bodies) // ROUNDS)
        elapsed = copy_elapsed = 0.0
        failed = 0
        for n in range(ROUNDS):
            part = slice(n * per_round, (n + 1) * per_round)
            log(f"round {n + 1}/{ROUNDS}: {len(bodies[part])} batches of {BATCH}, API then COPY")
            took, bad = post_all(base, token, bodies[part], CLIENTS)
            elapsed += took
            failed += bad
            rows = records[part.start * BATCH : part.stop * BATCH]
            copy_elapsed += copy_rows(rows, tenant_id, environment_id, agent_id)
        records_rate = len(records) / elapsed
        copy_rate = len(records) / copy_elapsed
        log(f"records done in {elapsed:.2f}s ({failed} failed); COPY in {copy_elapsed:.2f}s")
        log(f"buckets: {len(bucket_bodies)} POSTs from {RUNTIMES} runtimes")
        bucket_elapsed, bucket_failed = post_all(base, token, bucket_bodies, CLIENTS)
        log(f"buckets done in {bucket_elapsed:.2f}s ({bucket_failed} failed)")
        rss = peak_rss_kib(pids[0])
    emit("ingest_records", f"{records_rate:.0f}", "records/s")
    emit("ingest_copy", f"{copy_rate:.0f}", "records/s")
    emit_ratio("ingest_records_vs_copy", records_rate / copy_rate)
    emit("ingest_records_failed_batches", failed)
    emit("ingest_buckets_posts", f"{len(bucket_bodies) / bucket_elapsed:.0f}", "posts/s")
    emit("ingest_buckets_fleet", f"{bucket_requests / bucket_elapsed:.0f}", "requests/s")
    emit(
        "ingest_buckets_runtimes_sustained",
        f"{len(bucket_bodies) / bucket_elapsed * 10:.0f}",
        "runtimes (one POST per 10 s each)",
    )
    emit("ingest_buckets_failed_posts", bucket_failed)
    emit("web_peak_rss", f"{rss / 1024:.0f}", f"MiB ({args.workers} workers)")


if __name__ == "__main__":
    main()
