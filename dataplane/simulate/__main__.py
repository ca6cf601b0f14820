"""``python -m dataplane.simulate``: a simulated fleet producing traffic for the demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .agent import APPROVAL_TIMEOUT_S
from .fleet import Fleet
from .stats import format_table, outcome_stats

TOKEN_ENV = "DATAPLANE_RUNTIME_TOKEN"  # noqa: S105 - the variable's name, not a token


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dataplane.simulate", description=__doc__)
    parser.add_argument("--url", required=True, help="control plane base URL")
    # The token is a secret: on the command line every user of the machine sees it (``ps``),
    # so --token-file or the environment variable are the ways to pass it.
    parser.add_argument(
        "--token",
        default=None,
        help=f"runtime token (tenant + environment); prefer --token-file or ${TOKEN_ENV}, "
        "which ps does not show",
    )
    parser.add_argument("--token-file", default=None, help="file holding the runtime token")
    parser.add_argument("--runtimes", type=int, default=10, help="simulated runtimes (default 10)")
    parser.add_argument("--agent", default="support-bot", help="agent slug (default support-bot)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    parser.add_argument("--rps", type=float, default=10.0, help="requests/s across the fleet")
    parser.add_argument("--seed", default="0", help="seed of the synthetic traffic")
    parser.add_argument("--requests", type=int, default=None, help="stop after N per runtime")
    parser.add_argument("--instance-prefix", default="sim", help="instance id prefix")
    parser.add_argument("--cache-dir", default=None, help="last-known-good cache root")
    parser.add_argument("--tool-failure-rate", type=float, default=0.02)
    parser.add_argument(
        "--no-report", action="store_true", help="do not report usage (reporting is the default)"
    )
    parser.add_argument(
        "--report-mode",
        choices=["records", "buckets"],
        default="records",
        help="one record per request, or 10-second buckets plus errors and a sample",
    )
    parser.add_argument(
        "--rate-limits", action="store_true", help="enforce the bundles' per-runtime rate limits"
    )
    parser.add_argument(
        "--approvals",
        choices=["live", "simulated"],
        default="live",
        help="live: calls that need a human open real approval requests and wait for them "
        "(default); simulated: a fake human, as offline",
    )
    parser.add_argument(
        "--approval-timeout",
        type=float,
        default=APPROVAL_TIMEOUT_S,
        help="seconds a call waits for a decision before cancelling it (default 14400: the "
        "request's own expiry, its queue's timeout, comes first)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=64,
        help="requests per runtime that may wait for a human at once (default 64)",
    )
    parser.add_argument("--json", action="store_true", help="print the final stats as JSON")
    parser.add_argument("--progress", type=float, default=10.0, help="seconds between summaries")
    args = parser.parse_args(argv)
    args.token = _token(parser, args)
    return args


def _token(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The runtime token from --token, else --token-file, else $DATAPLANE_RUNTIME_TOKEN;
    exits with a usage error when none gives one."""
    token = args.token
    if not token and args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            parser.error(f"--token-file: {exc}")
    token = token or os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        parser.error(f"a runtime token is needed: --token-file PATH or ${TOKEN_ENV}")
    return str(token)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    fleet = Fleet(
        args.url,
        args.token,
        runtimes=args.runtimes,
        agent=args.agent,
        rps=args.rps,
        seed=args.seed,
        instance_prefix=args.instance_prefix,
        cache_root=args.cache_dir,
        report=not args.no_report,
        report_mode=args.report_mode,
        requests_per_runtime=args.requests,
        tool_failure_rate=args.tool_failure_rate,
        enforce_rate_limits=args.rate_limits,
        approvals=args.approvals,
        approval_timeout_s=args.approval_timeout,
        max_in_flight=args.max_in_flight,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    fleet.start()
    deadline = time.monotonic() + args.duration
    try:
        while not done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            step = min(args.progress, remaining)
            # With --requests the run ends as soon as every runtime handled its share.
            if args.requests is not None and fleet.wait_finished(step):
                break
            if args.requests is None:
                done.wait(step)
            if not args.json:
                print(f"-- {len(fleet.records)} requests", file=sys.stderr)
                print(format_table(fleet.stats()), file=sys.stderr)
    except KeyboardInterrupt:
        pass
    fleet.stop()
    stats = outcome_stats(fleet.records)
    if args.json:
        print(json.dumps([item.as_json() for item in stats.values()], indent=2))
    else:
        print(format_table(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
