"""Budgets: reservations per second against one hot strict budget through
``POST /api/runtime/v1/budgets/reserve`` (16 concurrent clients, keep-alive), beside the same
number of plain Redis ``INCR``s on one key from 16 clients in the same run (the practical limit
of a counter), and a Redis Lua check-and-reserve script (what keeping the counters in Redis
would give: the alternative docs/decisions/0025 weighed). Then the overspend: 16 clients
reserve against a strict budget close to its limit until refused; consumed + reserved must
never pass the limit.

    python -m benchmarks.budgets [--reservations 6000] [--clients 16] [--workers 2]

Prints ``NAME: VALUE UNIT`` figures, ``ratio.reserve_vs_redis_incr`` and
``budget_overspend_usd`` (must be 0)."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from ._harness import REDIS_URL, emit, emit_ratio, fresh_database, log, server, setup_django

RESERVE = "/api/runtime/v1/budgets/reserve"


def seed(limit_usd: str) -> tuple[str, int]:
    """A tenant with one agent, a runtime token and a strict hourly agent budget of
    ``limit_usd``. Returns the raw token and the budget id."""
    from apps.accounts.runtime_tokens import runtime_token_create
    from apps.audit.services import SystemActor
    from apps.budgets.services import budget_create
    from apps.tenancy.services import agent_create, tenant_create

    actor = SystemActor("benchmark")
    tenant = tenant_create(actor=actor, slug="bench", name="Bench")
    production = tenant.environments.get(slug="production")
    agent = agent_create(actor=actor, tenant=tenant, slug="support-bot", name="support-bot")
    raw = runtime_token_create(actor=actor, tenant=tenant, environment=production, name="bench")[1]
    budget = budget_create(
        actor=actor,
        tenant=tenant,
        data={
            "name": "hot",
            "scope": "agent",
            "agent": agent,
            "window": "month",
            "limits": {"cost_usd": limit_usd},
            "action": "block",
            "strict": True,
        },
    )
    return raw, budget.pk


def reserve_all(
    base: str,
    token: str,
    count: int,
    clients: int,
    estimate: str,
    prefix: str,
    *,
    invalid: bool = False,
) -> tuple[float, int, int]:
    """``count`` reservations from ``clients`` threads (one keep-alive connection each).
    Returns (wall time, granted, answers that were not 200). ``invalid``: send bodies the
    route refuses before any database work (400), to measure the HTTP floor."""
    parts = urlsplit(base)
    lock = threading.Lock()
    next_id = [0]
    granted = [0]
    failures = [0]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        while True:
            with lock:
                if next_id[0] >= count:
                    break
                n = next_id[0]
                next_id[0] += 1
            body = json.dumps(
                {
                    "reservation_id": f"{prefix}-{n}:1",
                    "request_id": f"{prefix}-{n}",
                    "agent": "support-bot",
                    "estimate": {"cost_usd": estimate, "tokens": 1000},
                }
            )
            conn.request("POST", RESERVE, body="{}" if invalid else body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            with lock:
                if invalid:
                    failures[0] += response.status != 400
                elif response.status != 200:
                    failures[0] += 1
                    if failures[0] <= 3:
                        log(f"answer {response.status}: {payload[:300]!r}")
                elif json.loads(payload)["granted"]:
                    granted[0] += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, granted[0], failures[0]


def redis_rate(count: int, clients: int, *, lua: bool) -> float:
    """Operations per second on one key from ``clients`` threads: plain ``INCR``, or (``lua``)
    a script that checks consumed + reserved + estimate against a limit and reserves."""
    import redis

    key = "bench:budget:hot"
    admin = redis.Redis.from_url(REDIS_URL)
    admin.delete(key)
    script = admin.register_script(
        "local used = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0') "
        "if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end "
        "redis.call('HINCRBYFLOAT', KEYS[1], 'reserved', ARGV[1]) return 1"
    )
    lock = threading.Lock()
    left = [count]

    def worker() -> None:
        client = redis.Redis.from_url(REDIS_URL)
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            if lua:
                script(keys=[key], args=["0.001", "1000000"], client=client)
            else:
                client.incr(key)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    admin.delete(key)
    return count / elapsed


def overspend(budget_id: int) -> Decimal:
    """How far consumed + reserved of the budget's counters pass its limit (0 if not)."""
    from apps.budgets.models import Budget, BudgetUsage

    budget = Budget.objects.get(pk=budget_id)
    worst = Decimal(0)
    for row in BudgetUsage.objects.filter(budget=budget):
        total = row.cost_usd + row.reserved_cost_usd
        worst = max(worst, total - (budget.limit_cost_usd or total))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reservations", type=int, default=6000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    args = ap.parse_args()
    os.environ.setdefault("BENCH_DB", "controlplane_bench_budgets")
    os.environ["RUNTIME_TOKEN_REQUESTS_PER_MINUTE"] = str(10**8)
    log("fresh database")
    fresh_database()
    setup_django()
    token, hot = seed("1000000")
    production: dict[str, Any] = {"CONN_MAX_AGE": "0", "DATABASE_POOL": "true"}
    with server(workers=args.workers, env=production) as base:
        log("warm-up")
        reserve_all(base, token, 400, args.clients, "0.001", "warm")
        log(f"{args.reservations} reservations, {args.clients} clients, one hot budget")
        took, granted, failed = reserve_all(
            base, token, args.reservations, args.clients, "0.001", "hot"
        )
        reserve_rate = args.reservations / took
        floor_took, _, floor_failed = reserve_all(
            base, token, args.reservations, args.clients, "0", "floor", invalid=True
        )
        incr_rate = redis_rate(args.reservations * 4, args.clients, lua=False)
        lua_rate = redis_rate(args.reservations * 4, args.clients, lua=True)
        # The overspend: a fresh budget $10 from its limit, 16 clients racing past it.
        from apps.audit.services import SystemActor
        from apps.budgets.models import Budget
        from apps.budgets.services import budget_update

        budget = Budget.objects.select_related("tenant", "agent", "environment").get(pk=hot)
        spent = budget.usage.get().reserved_cost_usd
        limit = spent + Decimal(10)
        budget_update(
            actor=SystemActor("benchmark"),
            budget=budget,
            data={
                **budget.snapshot(),
                "agent": budget.agent,
                "environment": None,
                "limits": {"cost_usd": str(limit)},
            },
        )
        log(f"overspend: limit ${limit}, $0.37 a step, {args.clients} clients")
        _, near_granted, near_failed = reserve_all(base, token, 200, args.clients, "0.37", "near")
        over = overspend(hot)
    emit(
        "budget_reserve",
        f"{reserve_rate:.0f}",
        f"reservations/s ({args.clients} clients, one budget)",
    )
    emit("budget_reserve_failed", failed)
    emit("redis_incr", f"{incr_rate:.0f}", f"INCR/s ({args.clients} clients, one key)")
    emit("redis_lua_reserve", f"{lua_rate:.0f}", "check-and-reserve scripts/s (reference)")
    emit(
        "budget_http_floor",
        f"{args.reservations / floor_took:.0f}",
        f"answers/s (the route refusing the body before any database work; {floor_failed} odd)",
    )
    emit_ratio("reserve_vs_redis_incr", reserve_rate / incr_rate)
    emit(
        "budget_near_limit_granted",
        near_granted,
        f"of 200 (at most {int(Decimal(10) / Decimal('0.37'))} fit)",
    )
    emit("budget_near_limit_failed", near_failed)
    emit("budget_overspend_usd", f"{over}", "USD (must be 0)")
    if granted != args.reservations:
        log(f"warning: {args.reservations - granted} hot reservations refused")


if __name__ == "__main__":
    main()
