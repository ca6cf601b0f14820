"""Serving: requests per second of the runtime-facing reads, 200 and 304 paths, beside the
Unleash server itself serving the same 50 flags on this machine in the same run.

    python -m benchmarks.serving [--duration 10] [--reps 2] [--workers 1] [--no-unleash-anchor]

- `/api/client/features` (the Unleash client API; same flag set as the anchor's seed: 50
  flexibleRollout flags with constraints, every 10th with variants), and
- `/api/runtime/v1/config` (the signed snapshot with two agents' bundles deployed),
each with a runtime token check and ETag handling, loaded by wrk from a second process.
Prints ``NAME: VALUE UNIT`` figures and ``ratio.NAME: VALUE`` (above 1.0: we serve faster)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import requests

from ._harness import (
    ROOT,
    emit,
    emit_ratio,
    fresh_database,
    log,
    median_wrk,
    run_unleash_anchor,
    server,
    setup_django,
)

APPS = ["web", "api", "worker", "mobile-bff", "billing"]
TYPES = ["release", "release", "release", "experiment", "operational"]


def anchor_flag_set(n: int = 50) -> dict[str, object]:
    """The anchor script's seed, as a client-features payload to import."""
    features = []
    for i in range(n):
        name = f"anchor-flag-{i:03d}"
        constraints: list[dict[str, object]] = [
            {
                "contextName": "appName",
                "operator": "IN",
                "values": APPS[: 2 + i % 3],
                "inverted": False,
                "caseInsensitive": False,
            }
        ]
        if i % 2 == 1:
            constraints.append(
                {
                    "contextName": "userId",
                    "operator": "STR_STARTS_WITH",
                    "values": [f"tenant-{i % 7}-", "internal-"],
                    "inverted": False,
                    "caseInsensitive": True,
                }
            )
        strategy: dict[str, object] = {
            "name": "flexibleRollout",
            "constraints": constraints,
            "parameters": {"rollout": "25", "stickiness": "sessionId", "groupId": name},
        }
        if i % 10 == 0:
            strategy["variants"] = [
                {
                    "name": "control",
                    "weight": 500,
                    "weightType": "variable",
                    "stickiness": "sessionId",
                    "payload": {"type": "string", "value": "control"},
                },
                {
                    "name": "treatment",
                    "weight": 500,
                    "weightType": "variable",
                    "stickiness": "sessionId",
                    "payload": {
                        "type": "json",
                        "value": json.dumps({"color": "blue", "limit": 10}),
                    },
                },
            ]
        features.append(
            {
                "name": name,
                "type": TYPES[i % 5],
                "description": f"anchor benchmark flag {i}",
                "enabled": True,
                "stale": False,
                "impressionData": False,
                "project": "default",
                "strategies": [strategy],
                "variants": [],
            }
        )
    return {"version": 2, "features": features}


def seed() -> str:
    from apps.accounts.runtime_tokens import runtime_token_create
    from apps.audit.services import SystemActor
    from apps.bundles.services import bundle_version_push
    from apps.flags.services.imports import flags_import
    from apps.rollouts.services import deployment_create
    from apps.tenancy.services import agent_create, tenant_create

    actor = SystemActor("benchmark")
    tenant = tenant_create(actor=actor, slug="bench", name="Bench")
    production = tenant.environments.get(slug="production")
    demo = ROOT / "apps" / "bundles" / "demo"
    for slug, file in [
        ("support-bot", "support-bot-v1.yaml"),
        ("refund-agent", "refund-agent-v1.yaml"),
    ]:
        agent = agent_create(actor=actor, tenant=tenant, slug=slug, name=slug)
        version = bundle_version_push(
            actor=actor, agent=agent, message="bench", source=Path(demo / file).read_text()
        ).version
        deployment_create(
            actor=actor, agent=agent, environment=production, version=version, reason="bench"
        )
    flags_import(
        actor=actor,
        environment=production,
        payload=anchor_flag_set(),
        mode="replace",
        reason="bench",
    )
    return runtime_token_create(actor=actor, tenant=tenant, environment=production, name="bench")[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--reps", type=int, default=2, help="wrk runs per path (median reported)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument(
        "--no-unleash-anchor", action="store_true", help="skip the Unleash server anchor"
    )
    args = ap.parse_args()

    anchor = (
        {}
        if args.no_unleash_anchor
        else run_unleash_anchor(duration_s=args.duration, reps=args.reps, sdk_n=20)
    )
    fresh_database()
    setup_django()
    token = seed()
    ours: dict[str, dict[str, float]] = {}
    with server(workers=args.workers) as url:
        for name, path in [
            ("client_features", "/api/client/features"),
            ("runtime_config", "/api/runtime/v1/config"),
        ]:
            first = requests.get(url + path, headers={"Authorization": token}, timeout=10)
            first.raise_for_status()
            emit(f"{name}.payload_bytes", len(first.content), "B")
            headers = {"Authorization": token}
            log(f"wrk {path} 200 path")
            ours[f"{name}.http200"] = median_wrk(
                url + path, headers, duration_s=args.duration, reps=args.reps
            )
            log(f"wrk {path} 304 path")
            ours[f"{name}.http304"] = median_wrk(
                url + path,
                {**headers, "If-None-Match": first.headers["ETag"]},
                duration_s=args.duration,
                reps=args.reps,
            )
    emit("workers", args.workers)
    for key, figures in ours.items():
        emit(f"{key}.rps", round(figures["rps"]), "req/s")
        emit(f"{key}.p50", round(figures["p50_ms"], 2), "ms")
        emit(f"{key}.p99", round(figures["p99_ms"], 2), "ms")
        emit(f"{key}.errors", int(figures["errors"]))
    emit(
        "runtime_config.goal_304_at_least_10000_rps",
        "met" if ours["runtime_config.http304"]["rps"] >= 10000 else "missed",
    )
    if anchor:
        for kind in ("200", "304"):
            theirs = float(anchor[f"http{kind}_rps_median"])
            emit_ratio(
                f"client_features_http{kind}_rps_vs_unleash",
                ours[f"client_features.http{kind}"]["rps"] / theirs,
            )
            emit_ratio(
                f"runtime_config_http{kind}_rps_vs_unleash",
                ours[f"runtime_config.http{kind}"]["rps"] / theirs,
            )


if __name__ == "__main__":
    main()
