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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--no-worker", action="store_true", help="serve the web app only")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings.base")
    _prepare()
    python = sys.executable
    commands = [[python, "-m", "uvicorn", "controlplane.asgi:application", "--host", args.host,
                 "--port", str(args.port), "--log-level", "warning"]]
    if not args.no_worker:
        commands += [
            [python, "-m", "celery", "-A", "controlplane", "worker", "--pool=threads",
             "--concurrency=4", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
            [python, "-m", "celery", "-A", "controlplane", "beat", "--loglevel=WARNING"],
        ]
    children = [subprocess.Popen(cmd) for cmd in commands]  # noqa: S603 - our own interpreter
    print(f"  Dashboard: http://{args.host}:{args.port}/   (Ctrl-C stops web, worker and beat)\n", flush=True)

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
                print(f"  {child.args[2]} exited with {child.returncode}; stopping the rest", flush=True)
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
