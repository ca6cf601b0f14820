"""Propagation: simulated runtimes long-polling on loopback; an operator-side change; time until
every runtime has applied it. Measured for 1,000, 5,000 and 10,000 runtimes (up to
``--runtimes``); across two separately started server processes sharing Redis (the change made
through one, the runtimes long-polling the other); and, beside it in the same run, the same
fleet polling every 15 s (the Unleash SDKs' default refresh) and every 1 s with ETags.

    python -m benchmarks.propagation [--runtimes 10000] [--trials 3] [--workers 1]
                                     [--with-unleash-anchor]

The fleet is one asyncio process (``benchmarks._fleet``); its own CPU time is printed
(``propagation.<case>.fleet_cpu_share``: CPU seconds per wall second while waiting) so a reader
can tell whether the client or the server was the limit. One runtime token serves at most
``PER_TOKEN`` runtimes (the server caps open long-polls per token, FASTPATH_MAX_OPEN_PER_TOKEN).

Prints ``NAME: VALUE UNIT`` figures and ``ratio.NAME: VALUE`` (above 1.0: we do better)."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from ._harness import (
    ROOT,
    bench_environment,
    emit,
    emit_ratio,
    fresh_database,
    log,
    run_unleash_anchor,
    server,
    setup_django,
)

PER_TOKEN = 900
SIZES = (1000, 5000, 10000)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _revision(environment_id: int) -> int:
    from apps.tenancy.models import Environment

    return Environment.objects.values_list("revision", flat=True).get(pk=environment_id)


def _operator_change(environment_id: int) -> int:
    """What an operator does in an incident: engage a kill switch (a tool disabled in the
    environment), committed in this process — not the server's — and announced over Redis, as
    in production. Returns the revision that carries it."""
    from apps.audit.services import SystemActor
    from apps.flags.services.kill_switches import kill_switch_engage
    from apps.tenancy.models import Environment

    environment = Environment.objects.select_related("tenant").get(pk=environment_id)
    kill_switch_engage(
        actor=SystemActor("benchmark"),
        kind="tool_disabled",
        scope="environment",
        tenant=environment.tenant,
        environment=environment,
        tool_pattern=f"bench_tool_{environment.revision}",
        reason="benchmark incident",
    )
    return _revision(environment_id)


def _change_through(url: str, api_token: str, environment_id: int) -> Callable[[], int]:
    """The same change, made through another server's REST API (``POST
    /api/v1/kill-switches/``), as an operator's browser or script would."""

    def change() -> int:
        response = requests.post(
            url + "/api/v1/kill-switches/",
            headers={"Authorization": f"Token {api_token}"},
            json={
                "kind": "tool_disabled",
                "scope": "environment",
                "environment": environment_id,
                "tool_pattern": f"bench_tool_{time.time_ns()}",
                "reason": "benchmark incident",
            },
            timeout=30,
        )
        response.raise_for_status()
        return _revision(environment_id)

    return change


@dataclass
class Result:
    delays: list[float] = field(default_factory=list)
    missed: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0


def measure(
    *,
    url: str,
    tokens: list[str],
    change: Callable[[], int],
    n: int,
    mode: str,
    interval: float,
    trials: int,
) -> Result:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks._fleet",
        "--url",
        url + "/api/runtime/v1/config",
        "--n",
        str(n),
        "--mode",
        mode,
        "--interval",
        str(interval),
        "--timeout",
        str(max(30, interval * 3)),
    ]
    fleet = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**bench_environment(), "FLEET_TOKENS": ",".join(tokens)},
    )
    assert fleet.stdin is not None and fleet.stdout is not None
    result = Result()
    try:
        if fleet.stdout.readline().strip() != "ready":
            raise RuntimeError("fleet did not start")
        for _ in range(trials):
            # Long-pollers settle into their wait; pollers spread over their interval.
            time.sleep(1.0 + n / 5000 if mode == "longpoll" else min(interval, 3.0))
            committed = time.time()
            revision = change()
            fleet.stdin.write(f"{revision} {committed}\n")
            fleet.stdin.flush()
            _, _, payload = fleet.stdout.readline().partition(f"result {revision} ")
            trial = json.loads(payload)
            missed = sum(1 for d in trial["delays"] if d is None)
            if missed:
                log(f"{mode}/{interval}s: {missed} runtimes missed the change within the timeout")
            result.missed += missed
            result.delays += [d for d in trial["delays"] if d is not None]
            result.cpu_s += trial["cpu_s"]
            result.wall_s += trial["wall_s"]
            if trial["errors"]:
                log(f"{mode}: answers other than 200/304 while waiting: {trial['errors']}")
        return result
    finally:
        fleet.kill()
        fleet.wait()


def _emit(label: str, result: Result) -> None:
    emit(f"propagation.{label}.p50", round(statistics.median(result.delays) * 1000, 1), "ms")
    emit(f"propagation.{label}.p99", round(_percentile(result.delays, 0.99) * 1000, 1), "ms")
    emit(f"propagation.{label}.max", round(max(result.delays) * 1000, 1), "ms")
    emit(f"propagation.{label}.samples", len(result.delays))
    emit(f"propagation.{label}.missed", result.missed)
    if result.wall_s:
        emit(f"propagation.{label}.fleet_cpu_share", round(result.cpu_s / result.wall_s, 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runtimes", type=int, default=1000, help="largest fleet measured")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes of the server the fleet polls (scale-out on one host)",
    )
    ap.add_argument(
        "--with-unleash-anchor",
        action="store_true",
        help="also run the real Unleash server + SDK anchor (minutes)",
    )
    args = ap.parse_args()
    sizes = sorted({s for s in SIZES if s < args.runtimes} | {args.runtimes})
    base = sizes[0]

    fresh_database()
    setup_django()
    from apps.accounts.runtime_tokens import runtime_token_create
    from apps.accounts.services import admin_ensure, api_token_rotate
    from apps.audit.services import SystemActor
    from apps.tenancy.services import agent_create, tenant_create

    actor = SystemActor("benchmark")
    tenant = tenant_create(actor=actor, slug="bench", name="Bench")
    agent_create(actor=actor, tenant=tenant, slug="support-bot", name="Support bot")
    production = tenant.environments.get(slug="production")
    made = iter(range(10**6))

    def tokens(n: int) -> list[str]:
        """Fresh runtime tokens for a fleet of ``n``: a killed fleet's long-polls stay open on
        the server until their wait ends and count against their tokens meanwhile."""
        return [
            runtime_token_create(
                actor=actor, tenant=tenant, environment=production, name=f"fleet {next(made)}"
            )[1]
            for _ in range(math.ceil(n / PER_TOKEN))
        ]

    admin, _ = admin_ensure(username="bench-operator")
    api_token = api_token_rotate(actor=actor, user=admin)
    in_process = lambda: _operator_change(production.pk)  # noqa: E731

    results: dict[str, Result] = {}
    with server(workers=args.workers) as url, server(workers=1) as other_url:
        for n in sizes:
            log(f"{n} runtimes, longpoll, {args.trials} changes")
            results[f"longpoll.{n}"] = measure(
                url=url,
                tokens=tokens(n),
                change=in_process,
                n=n,
                mode="longpoll",
                interval=0.0,
                trials=args.trials,
            )
        for n in sorted({base, sizes[-1]}):
            log(f"{n} runtimes on one server, the change through another server process")
            results[f"cross_process.{n}"] = measure(
                url=url,
                tokens=tokens(n),
                change=_change_through(other_url, api_token, production.pk),
                n=n,
                mode="longpoll",
                interval=0.0,
                trials=args.trials,
            )
        for label, interval, trials in [
            ("poll_1s", 1.0, args.trials),
            ("poll_15s", 15.0, max(1, args.trials - 1)),
        ]:
            log(f"{base} runtimes, {label}, {trials} changes")
            results[label] = measure(
                url=url,
                tokens=tokens(base),
                change=in_process,
                n=base,
                mode="poll",
                interval=interval,
                trials=trials,
            )

    emit("propagation.runtimes", args.runtimes)
    emit("propagation.server_workers", args.workers)
    for label, result in results.items():
        _emit(label, result)
    ours = _percentile(results[f"longpoll.{base}"].delays, 0.99)
    emit("propagation.longpoll.p99", round(ours * 1000, 1), "ms")
    emit_ratio("propagation_p99_vs_poll_15s", _percentile(results["poll_15s"].delays, 0.99) / ours)
    emit_ratio("propagation_p99_vs_poll_1s", _percentile(results["poll_1s"].delays, 0.99) / ours)
    for n, goal_s in ((1000, 0.25), (10000, 1.0)):
        if f"longpoll.{n}" in results:
            p99 = _percentile(results[f"longpoll.{n}"].delays, 0.99)
            emit(
                f"propagation.goal_p99_under_{round(goal_s * 1000)}ms_at_{n}",
                "met" if p99 <= goal_s else "missed",
            )
    if args.with_unleash_anchor:
        anchor = run_unleash_anchor(duration_s=5, reps=1, sdk_n=100, trials=1)
        for tag in ("default", "r1"):
            theirs_ms = float(anchor[f"prop_{tag}_p99_ms"])
            emit_ratio(f"propagation_p99_vs_unleash_sdk_{tag}_refresh", theirs_ms / (ours * 1000))


if __name__ == "__main__":
    main()
