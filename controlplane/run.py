"""``make run``: the embedded default in one process tree.

Migrates the SQLite database under var/, makes sure an Admin exists (printing how to log in),
loads the demo data, then serves the dashboard with uvicorn beside a Celery worker and beat on
the filesystem broker. Ctrl-C (or SIGTERM) stops all of it."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType


def _prepare() -> Path:
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    from apps.accounts.services import admin_ensure

    user, password = admin_ensure()
    var_dir = Path(settings.VAR_DIR)
    password_file = var_dir / "initial-admin-password"
    if password is not None:
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
    call_command("seed_demo", verbosity=0)
    print(f"\n  Log in as '{user.username}'.", flush=True)
    if password is not None:
        print(f"  Password (generated now, also saved to {password_file}): {password}", flush=True)
    elif password_file.exists():
        print(f"  The password generated at first run is in {password_file}.", flush=True)
    else:
        print("  Reset the password with: ./manage.py changepassword admin", flush=True)
    return var_dir


def _simulator_token(var_dir: Path) -> str | None:
    """A runtime token for the demo fleet, kept under var/ so restarts reuse it; a new one
    when an operator revoked it (revoking it is part of the demo)."""
    from apps.accounts.runtime_tokens import runtime_token_authenticate, runtime_token_create
    from apps.audit.services import SystemActor
    from apps.tenancy.models import Environment

    token_file = var_dir / "simulator-token"
    if token_file.exists():
        raw = token_file.read_text().strip()
        if runtime_token_authenticate(raw) is not None:
            return raw
    environment = (
        Environment.objects.filter(tenant__slug="acme", slug="production")
        .select_related("tenant")
        .first()
    )
    if environment is None:
        return None
    _, raw = runtime_token_create(
        actor=SystemActor("system:demo"),
        tenant=environment.tenant,
        environment=environment,
        name="demo simulator fleet",
        reason="the simulated runtimes of make run",
    )
    token_file.write_text(raw + "\n")
    token_file.chmod(0o600)
    return raw


def _name(child: subprocess.Popen[bytes]) -> str:
    """``uvicorn``, ``celery``…: the module a child runs (``python -m <module> …``)."""
    args = child.args
    return str(args[2]) if isinstance(args, list) and len(args) > 2 else str(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--no-worker", action="store_true", help="serve the web app only")
    parser.add_argument(
        "--no-simulator", action="store_true", help="do not start the simulated runtimes"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings.base")
    # The embedded default runs everything on this machine: runtimes started beside it push
    # to loopback, which a production control plane refuses (SSRF guard, docs/runtime-api.md).
    os.environ.setdefault("RUNTIME_PUSH_ALLOWED_CIDRS", "127.0.0.0/8,::1/128")
    var_dir = _prepare()
    simulator_token = None if args.no_simulator else _simulator_token(var_dir)
    python = sys.executable
    commands = [
        [
            python,
            "-m",
            "uvicorn",
            "controlplane.asgi:application",
            "--host",
            args.host,
            "--port",
            str(args.port),
            "--log-level",
            "warning",
        ]
    ]
    if not args.no_worker:
        commands += [
            [
                python,
                "-m",
                "celery",
                "-A",
                "controlplane",
                "worker",
                "--pool=threads",
                "--concurrency=4",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
            ],
            [python, "-m", "celery", "-A", "controlplane", "beat", "--loglevel=WARNING"],
        ]
    if simulator_token:
        # The demo fleet: simulated runtimes of both demo agents in production, serving what
        # the control plane tells them and reporting back.
        for agent in ("support-bot", "refund-agent"):
            commands.append(
                [
                    python,
                    "-m",
                    "dataplane.simulate",
                    "--url",
                    f"http://{args.host}:{args.port}",
                    "--token",
                    simulator_token,
                    "--runtimes",
                    "3",
                    "--agent",
                    agent,
                    "--duration",
                    str(10 * 365 * 86400),
                    "--rps",
                    "1",
                    "--progress",
                    "3600",
                    "--instance-prefix",
                    f"demo-{agent}",
                    "--cache-dir",
                    str(var_dir / "simulator"),
                ]
            )
    children = [subprocess.Popen(cmd) for cmd in commands]  # noqa: S603 - our own interpreter
    print(
        f"  Dashboard: http://{args.host}:{args.port}/   (Ctrl-C stops web, worker and beat)\n",
        flush=True,
    )

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for child in children:
            if child.poll() is not None:
                print(
                    f"  {_name(child)} exited with {child.returncode}; stopping the rest",
                    flush=True,
                )
                stopping, exit_code = True, 1
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    print("  Stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
