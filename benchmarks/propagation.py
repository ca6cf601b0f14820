"""Propagation: 1,000 simulated runtimes long-polling on loopback; an operator-side change;
time until every runtime has applied it. Beside it, the same fleet polling every 15 s (the
Unleash SDKs' default refresh) and every 1 s with ETags, measured in the same run.

    python -m benchmarks.propagation [--runtimes 1000] [--trials 3] [--with-unleash-anchor]

Prints ``NAME: VALUE UNIT`` figures and ``ratio.NAME: VALUE`` (above 1.0: we do better)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

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


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


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
    return Environment.objects.values_list("revision", flat=True).get(pk=environment_id)


def measure(
    *, url: str, token: str, environment_id: int, n: int, mode: str, interval: float, trials: int
) -> list[float]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks._fleet",
        "--url",
        url + "/api/runtime/v1/config",
        "--token",
        token,
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
        env=bench_environment(),
    )
    assert fleet.stdin is not None and fleet.stdout is not None
    try:
        if fleet.stdout.readline().strip() != "ready":
            raise RuntimeError("fleet did not start")
        delays: list[float] = []
        for _ in range(trials):
            time.sleep(1.0 if mode == "longpoll" else min(interval, 3.0))
            committed = time.time()
            revision = _operator_change(environment_id)
            fleet.stdin.write(f"{revision} {committed}\n")
            fleet.stdin.flush()
            _, _, payload = fleet.stdout.readline().partition(f"result {revision} ")
            trial = json.loads(payload)
            missed = sum(1 for d in trial if d is None)
            if missed:
                log(f"{mode}/{interval}s: {missed} runtimes missed the change within the timeout")
            delays += [d for d in trial if d is not None]
        return delays
    finally:
        fleet.kill()
        fleet.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runtimes", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument(
        "--with-unleash-anchor",
        action="store_true",
        help="also run the real Unleash server + SDK anchor (minutes)",
    )
    args = ap.parse_args()

    fresh_database()
    setup_django()
    from apps.accounts.runtime_tokens import runtime_token_create
    from apps.audit.services import SystemActor
    from apps.tenancy.services import agent_create, tenant_create

    actor = SystemActor("benchmark")
    tenant = tenant_create(actor=actor, slug="bench", name="Bench")
    agent_create(actor=actor, tenant=tenant, slug="support-bot", name="Support bot")
    production = tenant.environments.get(slug="production")
    _, token = runtime_token_create(
        actor=actor, tenant=tenant, environment=production, name="bench fleet"
    )

    results: dict[str, list[float]] = {}
    with server(workers=1) as url:
        for label, mode, interval, trials in [
            ("longpoll", "longpoll", 0.0, args.trials),
            ("poll_1s", "poll", 1.0, args.trials),
            ("poll_15s", "poll", 15.0, max(1, args.trials - 1)),
        ]:
            log(f"{args.runtimes} runtimes, {label}, {trials} changes")
            results[label] = measure(
                url=url,
                token=token,
                environment_id=production.pk,
                n=args.runtimes,
                mode=mode,
                interval=interval,
                trials=trials,
            )

    emit("propagation.runtimes", args.runtimes)
    for label, delays in results.items():
        emit(f"propagation.{label}.p50", round(statistics.median(delays) * 1000, 1), "ms")
        emit(f"propagation.{label}.p99", round(_percentile(delays, 0.99) * 1000, 1), "ms")
        emit(f"propagation.{label}.max", round(max(delays) * 1000, 1), "ms")
        emit(f"propagation.{label}.samples", len(delays))
    ours = _percentile(results["longpoll"], 0.99)
    emit_ratio("propagation_p99_vs_poll_15s", _percentile(results["poll_15s"], 0.99) / ours)
    emit_ratio("propagation_p99_vs_poll_1s", _percentile(results["poll_1s"], 0.99) / ours)
    emit("propagation.goal_p99_under_1s", "met" if ours < 1.0 else "missed")
    if args.with_unleash_anchor:
        anchor = run_unleash_anchor(duration_s=5, reps=1, sdk_n=100, trials=1)
        for tag in ("default", "r1"):
            theirs_ms = float(anchor[f"prop_{tag}_p99_ms"])
            emit_ratio(f"propagation_p99_vs_unleash_sdk_{tag}_refresh", theirs_ms / (ours * 1000))


if __name__ == "__main__":
    main()
