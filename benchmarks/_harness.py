"""Shared set-up for the benchmarks: a fresh database, the real server in a subprocess, wrk,
and the Unleash anchor. Everything runs on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DB = os.environ.get("BENCH_DB", "controlplane_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ANCHOR_SCRIPT = Path(
    os.environ.get("UNLEASH_ANCHOR", ROOT.parent / "shared" / "anchors" / "unleash_anchor.sh")
)


def emit(name: str, value: float | int | str, unit: str = "") -> None:
    print(f"{name}: {value}{' ' + unit if unit else ''}", flush=True)


def emit_ratio(name: str, value: float) -> None:
    print(f"ratio.{name}: {value:.2f}", flush=True)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_environment() -> dict[str, str]:
    var_dir = Path(tempfile.gettempdir()) / "controlplane-bench-var"
    var_dir.mkdir(exist_ok=True)
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings.base",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        "REDIS_URL": REDIS_URL,
        "CONTROLPLANE_VAR_DIR": str(var_dir),
        "LOG_LEVEL": "WARNING",
        "CONN_MAX_AGE": "60",
    }


def fresh_database() -> None:
    """Drop and recreate the benchmark database, then migrate it."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env=bench_environment(),
        check=True,
    )


def setup_django() -> None:
    os.environ.update(bench_environment())
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


@contextmanager
def server(
    *,
    workers: int = 1,
    pids: list[int] | None = None,
    env: dict[str, str] | None = None,
    app: str = "controlplane.asgi:application",
) -> Iterator[str]:
    """The real ASGI app (fast path + Django) under uvicorn; yields its base URL. ``pids``, if
    given, receives the server process id (its workers are that process's children); ``env``
    overrides the benchmark environment; ``app`` is another ASGI app under the same settings
    (the bare ceiling in ``benchmarks._bare_asgi``)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--workers",
        str(workers),
        "--backlog",
        "4096",
        "--timeout-keep-alive",
        "75",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**bench_environment(), **(env or {})})
    if pids is not None:
        pids.append(proc.pid)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wrk(
    url: str, headers: dict[str, str], *, duration_s: int, threads: int = 2, connections: int = 50
) -> dict[str, float]:
    """Run wrk in its own process; returns requests/s, p50/p99 latency (ms) and error count."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        for key, value in headers.items():
            script.write(f'wrk.headers["{key}"] = [[{value}]]\n')
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration_s}s",
            "--latency",
            "-s",
            script.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)

    def latency(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    return {"rps": rps, "p50_ms": latency("50"), "p99_ms": latency("99"), "errors": errors}


def median_wrk(
    url: str, headers: dict[str, str], *, duration_s: int, reps: int
) -> dict[str, float]:
    runs = [wrk(url, headers, duration_s=duration_s) for _ in range(reps)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def run_unleash_anchor(
    *, flags: int = 50, duration_s: int = 10, reps: int = 1, sdk_n: int = 100, trials: int = 1
) -> dict[str, str]:
    """Run the real Unleash server anchor (npm unleash-server, its own PostgreSQL cluster) and
    return its `anchor.*` figures."""
    if not ANCHOR_SCRIPT.exists():
        raise FileNotFoundError(
            f"Unleash anchor script not found at {ANCHOR_SCRIPT} (set UNLEASH_ANCHOR)"
        )
    env = {
        **os.environ,
        "FLAGS": str(flags),
        "WRK_DURATION": str(duration_s),
        "WRK_REPS": str(reps),
        "SDK_N": str(sdk_n),
        "PROP_TRIALS": str(trials),
    }
    log(f"running the Unleash anchor ({ANCHOR_SCRIPT}); this takes a few minutes")
    result = subprocess.run(["bash", str(ANCHOR_SCRIPT)], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-3000:])
        raise RuntimeError("the Unleash anchor failed")
    figures = {}
    for line in result.stdout.splitlines():
        if line.startswith("anchor.") and ": " in line:
            key, value = line.split(": ", 1)
            figures[key[len("anchor.") :]] = value.strip()
            print(line, flush=True)
    return figures
