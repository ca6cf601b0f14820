"""Serving: requests per second of the runtime-facing reads, 200 and 304 paths, beside the
Unleash server itself serving the same 50 flags on this machine in the same run.

    python -m benchmarks.serving [--duration 10] [--reps 3] [--ceiling-duration 4]
        [--ceiling-blocks 5] [--workers 1] [--no-unleash-anchor]

- `/api/client/features` (the Unleash client API; same flag set as the anchor's seed: 50
  flexibleRollout flags with constraints, every 10th with variants), and
- `/api/runtime/v1/config` (the signed snapshot with two agents' bundles deployed),
each with a runtime token check and ETag handling, loaded by wrk from a second process; then the
same bytes from a bare ASGI handler (``benchmarks._bare_asgi``: token compare + ETag compare,
nothing else) under the same uvicorn settings, the ceiling for Python on this machine: once
answering byte for byte what we answer, headers included (``ratio.*_vs_bare_asgi``), and once
with the fewest headers a correct answer needs (``ratio.*_vs_bare_asgi_fewest_headers``: the
gap between the two is what our header lines cost uvicorn to check and write); and the bytes of
one response, plain and gzip, ours and the anchor's.
Prints ``NAME: VALUE UNIT`` figures and ``ratio.NAME: VALUE`` (above 1.0: we serve faster)."""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import statistics
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

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
    wrk,
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


def wire_bytes(url: str, token: str, accept_encoding: str | None) -> tuple[int, str]:
    """Bytes on the wire of one 200 response (undecoded) and its Content-Encoding."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    headers = {"Authorization": token}
    if accept_encoding is not None:
        headers["Accept-Encoding"] = accept_encoding
    # http.client sends Accept-Encoding: identity unless told otherwise; skip it for "none".
    conn.request("GET", parts.path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"{url}: HTTP {response.status}")
    return len(body), response.getheader("Content-Encoding") or "identity"


def response_headers(url: str, request: dict[str, str]) -> tuple[int, list[list[str]]]:
    """The status and header lines of one answer to ``request`` (as wrk sends it), in order,
    without uvicorn's own ``date`` and ``server`` (both servers add them)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    conn.putrequest("GET", parts.path, skip_accept_encoding=True)
    for name, value in request.items():
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    response.read()
    conn.close()
    lines = [[n, v] for n, v in response.getheaders() if n.lower() not in ("date", "server")]
    return response.status, lines


# The order of the servers within a ceiling block, alternating from block to block: each is
# symmetric (linear drift within a block cancels), and between the two, ours is measured
# first and last, then in the middle, so what one server leaves behind for the next (caches,
# the CPU's state) falls on each side alike.
ORDERS = (
    ("ours", "bare", "fewest", "fewest", "bare", "ours"),
    ("bare", "fewest", "ours", "ours", "fewest", "bare"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--duration",
        type=int,
        default=10,
        help="seconds per wrk run of our own figures and the Unleash anchor's",
    )
    ap.add_argument(
        "--reps",
        type=int,
        default=3,
        help="wrk runs per path of our own figures and the anchor's (median reported)",
    )
    ap.add_argument(
        "--ceiling-duration",
        type=int,
        default=4,
        help="seconds per wrk run against the bare ASGI handler and ours beside it",
    )
    ap.add_argument(
        "--ceiling-blocks",
        type=int,
        default=5,
        help="counterbalanced blocks (ORDERS: each server twice, symmetric) per path and status",
    )
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument(
        "--no-unleash-anchor", action="store_true", help="skip the Unleash server anchor"
    )
    args = ap.parse_args()
    if args.ceiling_blocks < 1 or args.ceiling_duration < 1:
        ap.error("--ceiling-blocks and --ceiling-duration must be at least 1")

    anchor = (
        {}
        if args.no_unleash_anchor
        else run_unleash_anchor(duration_s=args.duration, reps=args.reps, sdk_n=20)
    )
    fresh_database()
    setup_django()
    token = seed()
    ours: dict[str, dict[str, float]] = {}
    bare: dict[str, dict[str, float]] = {}
    documents: dict[str, tuple[bytes, str, str]] = {}
    answered: dict[str, dict[str, list[list[str]]]] = {}  # the header lines we sent
    gzip_bytes: dict[str, int] = {}
    paths = [
        ("client_features", "/api/client/features"),
        ("runtime_config", "/api/runtime/v1/config"),
    ]
    with server(workers=args.workers) as url:
        for name, path in paths:
            first = requests.get(
                url + path,
                headers={"Authorization": token, "Accept-Encoding": "identity"},
                timeout=10,
            )
            first.raise_for_status()
            documents[name] = (
                first.content,
                first.headers["ETag"],
                first.headers.get("Content-Type", "application/json"),
            )
            ok_status, ok_lines = response_headers(url + path, {"Authorization": token})
            not_modified_status, not_modified_lines = response_headers(
                url + path, {"Authorization": token, "If-None-Match": first.headers["ETag"]}
            )
            assert (ok_status, not_modified_status) == (200, 304), (ok_status, not_modified_status)
            answered[name] = {"ok": ok_lines, "not_modified": not_modified_lines}
            emit(f"{name}.header_lines.http200", len(ok_lines))
            emit(f"{name}.header_lines.http304", len(not_modified_lines))
            plain, _ = wire_bytes(url + path, token, None)
            emit(f"{name}.payload_bytes", plain, "B")
            emit(f"{name}.bytes_per_response.plain", plain, "B")
            compressed, coding = wire_bytes(url + path, token, "gzip")
            emit(
                f"{name}.bytes_per_response.gzip",
                compressed if coding == "gzip" else "not served",
                "B" if coding == "gzip" else "",
            )
            if coding == "gzip":
                gzip_bytes[name] = compressed
    # The ceiling: the same bytes from a bare ASGI handler under the same server settings,
    # with our very header lines and with the fewest a correct answer needs. Every server is
    # up at once (an idle one costs nothing). wrk visits them in counterbalanced blocks
    # (``ORDERS``), each run ``--ceiling-duration`` seconds: a machine whose speed drifts
    # within a block weighs on both sides of a ratio alike, where one long run each, ours
    # always first, let the drift of a shared virtual machine decide the ratio (it moved by
    # ±10% from run to run). Each block gives one ratio (its two runs of ours against its two
    # of the other's); the ratio printed is the median of the blocks'.
    fewest: dict[str, dict[str, float]] = {}
    runs: dict[tuple[str, str], list[dict[str, float]]] = collections.defaultdict(list)
    blocks: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as servers:
        urls = {"ours": servers.enter_context(server(workers=args.workers))}
        for name, _ in paths:
            body, etag, content_type = documents[name]
            body_file = Path(scratch) / f"{name}.body"
            body_file.write_bytes(body)
            headers_file = Path(scratch) / f"{name}.headers.json"
            headers_file.write_text(json.dumps(answered[name]))
            env = {
                "BARE_BODY_FILE": str(body_file),
                "BARE_ETAG": etag,
                "BARE_TOKEN": token,
                "BARE_CONTENT_TYPE": content_type,
            }
            for side, extra_env in (
                ("bare", {"BARE_HEADERS_FILE": str(headers_file)}),
                ("fewest", {}),
            ):
                urls[f"{side}.{name}"] = servers.enter_context(
                    server(
                        workers=args.workers,
                        env={**env, **extra_env},
                        app="benchmarks._bare_asgi:app",
                    )
                )
        for block in range(args.ceiling_blocks):
            for name, path in paths:
                log(f"wrk {path}: {', '.join(ORDERS[block % 2])} (block {block + 1})")
                conditions = {"http200": {}, "http304": {"If-None-Match": documents[name][1]}}
                for kind, condition in conditions.items():
                    key = f"{name}.{kind}"
                    block_rps: dict[str, list[float]] = collections.defaultdict(list)
                    for side in ORDERS[block % 2]:
                        url = urls["ours"] if side == "ours" else urls[f"{side}.{name}"]
                        figures = wrk(
                            url + path,
                            {"Authorization": token, **condition},
                            duration_s=args.ceiling_duration,
                        )
                        if side != "ours":  # ours: measured as long as the anchor, below
                            runs[(side, key)].append(figures)
                        block_rps[side].append(figures["rps"])
                    for side in ("bare", "fewest"):
                        blocks[(side, key)].append(sum(block_rps["ours"]) / sum(block_rps[side]))
        # Our own requests per second (and the Unleash ratios): runs as long and as many as
        # the anchor's, ``--duration`` and ``--reps``.
        for name, path in paths:
            variants = {
                "http200": {},
                "http304": {"If-None-Match": documents[name][1]},
                **({"http200_gzip": {"Accept-Encoding": "gzip"}} if name in gzip_bytes else {}),
            }
            for kind, extra in variants.items():
                runs[("ours", f"{name}.{kind}")].append(
                    median_wrk(
                        urls["ours"] + path,
                        {"Authorization": token, **extra},
                        duration_s=args.duration,
                        reps=args.reps,
                    )
                )
    sides = {"ours": ours, "bare": bare, "fewest": fewest}
    for (side, key), measured in runs.items():
        sides[side][key] = {k: statistics.median(m[k] for m in measured) for k in measured[0]}
    emit("workers", args.workers)
    for label, table in (("", ours), ("bare_asgi.", bare), ("bare_asgi_fewest_headers.", fewest)):
        for key, figures in table.items():
            emit(f"{label}{key}.rps", round(figures["rps"]), "req/s")
            emit(f"{label}{key}.p50", round(figures["p50_ms"], 2), "ms")
            emit(f"{label}{key}.p99", round(figures["p99_ms"], 2), "ms")
            emit(f"{label}{key}.errors", int(figures["errors"]))
    emit(
        "runtime_config.goal_304_at_least_10000_rps",
        "met" if ours["runtime_config.http304"]["rps"] >= 10000 else "missed",
    )
    for name, _ in paths:
        for kind in ("200", "304"):
            key = f"{name}.http{kind}"
            for label, side in (("", "bare"), ("_fewest_headers", "fewest")):
                ratios = blocks[(side, key)]
                figure = f"{name}_http{kind}_vs_bare_asgi{label}"
                # the spread of the blocks' ratios: how far one block alone could mislead
                emit(f"{figure}.blocks.min", round(min(ratios), 3))
                emit(f"{figure}.blocks.max", round(max(ratios), 3))
                emit_ratio(figure, statistics.median(ratios))
    if anchor:
        emit("anchor.bytes_per_response.plain", anchor.get("payload_bytes", "?"), "B")
        emit("anchor.bytes_per_response.gzip", anchor.get("payload_gzip_bytes", "?"), "B")
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
        if anchor.get("payload_gzip_bytes") and "client_features" in gzip_bytes:
            emit_ratio(
                "client_features_gzip_bytes_vs_unleash",
                float(anchor["payload_gzip_bytes"]) / gzip_bytes["client_features"],
            )


if __name__ == "__main__":
    main()
