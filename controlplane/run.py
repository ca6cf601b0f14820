"""``make run``: the embedded default in one process tree.

Migrates the SQLite database under var/, makes sure an Admin exists (printing how to log in),
loads the demo data, then serves the dashboard with uvicorn beside a Celery worker and beat on
the filesystem broker, and, once the web server answers, a small simulated fleet of runtimes.
Ctrl-C (or SIGTERM) stops all of it, in order: the demo fleet first, then the rest; a second
Ctrl-C kills what is left. Each child has its own process group, so Ctrl-Z suspends this
process alone (its children run on until it is resumed or stopped).

The living demo (on unless ``--no-demo-traffic``): refund-agent's runtimes open real approval
requests that wait in the queue, a small demo budget burns past its 80% alert, and, once the
fleet has served for ``DEMO_ROLLOUT_AFTER_S`` seconds, a rollout of support-bot v2 starts in
production, which the canary analysis rolls back by itself within a few minutes
(``apps/dashboard/demo_story.py`` tells the whole story and what a restart does)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any


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


def _story_tenant() -> Any:
    from apps.tenancy.models import Tenant

    return Tenant.objects.filter(slug="acme").first()


def _story_prepare() -> None:
    """The demo's plan, budget and staging kill switch (``demo_story.story_prepare``),
    before the fleet spends."""
    from apps.dashboard.demo_story import story_prepare

    tenant = _story_tenant()
    try:
        lines = story_prepare(tenant) if tenant is not None else []
    except Exception as exc:  # the demo must never stop the product
        lines = [f"demo not prepared ({type(exc).__name__}: {exc})"]
    for line in lines:
        print(f"  {line}", flush=True)


def _story_rollout() -> bool:
    """Start (or leave) the demo rollout; False when it failed and is worth another try (the
    embedded database busy with the fleet's writes, say), printing why."""
    from django.db import close_old_connections

    from apps.dashboard.demo_story import story_rollout_start

    close_old_connections()
    tenant = _story_tenant()
    if tenant is None:
        return True
    try:
        print(f"  {story_rollout_start(tenant)}", flush=True)
    except Exception as exc:  # the demo must never stop the product
        print(f"  demo rollout not started ({type(exc).__name__}: {exc})", flush=True)
        return False
    return True


def _demo_rate(name: str, default: float) -> float:
    """A demo time scale from the environment (the tests shorten the story with them)."""
    return float(os.environ.get(name, default))


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
        Environment.objects.filter(
            tenant__slug="acme",
            slug="production",
            archived_at__isnull=True,
            tenant__archived_at__isnull=True,  # frozen: no new token (and no demo fleet)
        )
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
    """``uvicorn``, ``celery worker``…: what a child runs (``python -m <module> …``)."""
    args = child.args
    if not isinstance(args, list) or len(args) <= 2:
        return str(args)
    if args[2] == "celery" and len(args) > 5:
        return f"celery {args[5]}"  # python -m celery -A controlplane <worker|beat>
    return str(args[2])


READY_TIMEOUT_S = 120  # the web server's first answer; generous on a slow machine
FLEET_GRACE_S = 2.0  # the demo fleet's stop (it cancels its waiting approvals first)
# then the web server, worker and beat, each of which stops in about a second (the worker's
# broker transport notices the stop at once: controlplane/broker.py); whatever still runs after
# the grace is killed. Ctrl-C stops everything in ~2 s, 7 s at most on a machine too loaded to
# stop in time, and a second Ctrl-C kills what is left at once.
STOP_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1  # prctl(2)


def _child_setup() -> Callable[[], None] | None:
    """What each child runs between fork and exec, on Linux: a SIGTERM when this process
    dies, whatever the cause (killed by SIGKILL, say), so a child does not outlive it (its
    own children, uvicorn's workers say, are its to stop). Each child has its own process
    group (``Popen(process_group=0)``): a terminal's Ctrl-C reaches this process alone, which
    stops the children once each, in order (``_stop_all``). None where prctl(2) is not
    available. Safe between fork and exec because this process starts no thread: the one
    thread that forks is the one PR_SET_PDEATHSIG watches."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up once, before any fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    on_death = ctypes.c_ulong(signal.SIGTERM)

    def setup() -> None:
        # A refusal (none is documented for this option) leaves the child without it: the
        # ordered stop still stops it, only a killed parent would leave it behind.
        prctl(PR_SET_PDEATHSIG, on_death)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


class _StopRequests:
    """The signal handler for Ctrl-C, SIGTERM and SIGHUP: counts the stop requests. The
    first stops the children in order (``_stop_all``); a second one kills what is left."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1

    def again(self) -> bool:
        return self.count > 1


def _say(line: str) -> None:
    """Print ``line``; a terminal that is gone (closed: EIO) must not stop the stop."""
    with contextlib.suppress(OSError):
        print(line, flush=True)


def _kill(child: subprocess.Popen[bytes], why: str) -> None:
    """SIGKILL ``child``'s whole process group (its own children too), reap it, say why."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    _say(f"  {_name(child)} {why}: killed")


def _stop_all(
    stages: list[tuple[list[subprocess.Popen[bytes]], float]], hurry: Callable[[], bool]
) -> None:
    """Stop the children stage after stage, each stage a group of children and its grace in
    seconds: SIGTERM to each child of the group (exactly one stop signal: Celery takes a
    second one for "cold shutdown now" and uvicorn for "force exit"), then wait for them
    within the grace. The demo fleet goes first, while the web server still answers the
    cancels of its waiting approvals; then the web server, worker and beat. Whatever does
    not stop within its grace, or once ``hurry()`` (a second Ctrl-C), is killed."""
    for group, grace in stages:
        for child in group:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in group:
            while child.poll() is None and time.monotonic() < deadline and not hurry():
                time.sleep(0.05)
            if child.poll() is None:
                # A child stuck in a task or a call. Periodic tasks run again at the next
                # start and the beat re-sends recent side effects (RUNTIME_RESEND_WINDOW_S).
                why = "asked to stop again" if hurry() else f"still stopping after {grace:g} s"
                _kill(child, why)


def _local_url(host: str, port: int) -> str:
    """The URL of the web server from this machine (a wildcard bind answers on loopback)."""
    if host in {"", "0.0.0.0", "::", "[::]"}:  # noqa: S104 - recognised, not bound
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _wait_until_ready(url: str, web: subprocess.Popen[bytes], stopping: Callable[[], bool]) -> bool:
    """Poll ``/healthz`` until the web server answers 200; False when it exited, did not
    answer within ``READY_TIMEOUT_S``, or a stop was asked meanwhile."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and web.poll() is None and not stopping():
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except OSError:  # refused while it starts (URLError is an OSError)
            pass
        time.sleep(0.2)
    return False


def _celery_env() -> dict[str, str]:
    """The environment of the worker and beat. Run as root (a container's default user, a
    root shell), Celery prints a multi-line SecurityWarning that the worker has superuser
    privileges. It is true and it stays true: dropping privileges (``--uid``) would leave the
    worker unable to write the var/ files root created, and the warning is about running a
    worker that unpickles messages as root, which this one never does (it accepts JSON only).
    So the embedded default says it once, in one line (``main``), instead of Celery's banner;
    the container image runs everything as an unprivileged user, where no warning applies."""
    env = dict(os.environ)
    if os.geteuid() == 0:
        # by its message: -W cannot name a category outside the standard library
        ignore = "ignore:You're running the worker with superuser privileges"
        env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), ignore]))
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--no-worker", action="store_true", help="serve the web app only")
    parser.add_argument(
        "--no-simulator", action="store_true", help="do not start the simulated runtimes"
    )
    parser.add_argument(
        "--no-demo-traffic",
        action="store_true",
        help="a quiet fleet: v1 only at 1 request/s per agent, approvals decided by a "
        "simulated human, no demo rollout, no demo budget (default: the living demo, see "
        "README 'What you see in the first five minutes')",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings.base")
    # The embedded default runs everything on this machine: runtimes started beside it push
    # to loopback, which a production control plane refuses (SSRF guard, docs/runtime-api.md).
    os.environ.setdefault("RUNTIME_PUSH_ALLOWED_CIDRS", "127.0.0.0/8,::1/128")
    var_dir = _prepare()
    simulator_token = None if args.no_simulator else _simulator_token(var_dir)
    # The story needs the fleet's traffic and the worker's analysis: without either, no demo.
    demo = not args.no_demo_traffic and simulator_token is not None and not args.no_worker
    if demo:
        _story_prepare()
    python = sys.executable
    url = _local_url(args.host, args.port)

    # Ctrl-C, a stop sent to this process (kill, a supervisor), the terminal closed: each
    # stops the children in order (their own process groups: none of these reach them).
    # A hangup that was ignored when we started (nohup) stays ignored.
    requests = _StopRequests()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, requests)
    setup = _child_setup()

    def spawn(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        # our own interpreter, in its own process group, stopped with this process; no
        # terminal input (a background group that read it would be stopped by SIGTTIN)
        return subprocess.Popen(  # noqa: S603
            command, env=env, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=setup
        )

    web = [
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
        # Long-polls (runtimes, SDKs) and event streams stay open for up to a minute; on
        # Ctrl-C they are closed after this many seconds instead of waited for (the
        # runtimes reconnect to whichever server answers next).
        "--timeout-graceful-shutdown",
        "1",
    ]
    children = [spawn(web)]
    if not args.no_worker:
        if os.geteuid() == 0:
            print("  Running as root: so do the Celery worker and beat.", flush=True)
        celery = [python, "-m", "celery", "-A", "controlplane"]
        for command in (
            [
                *celery,
                "worker",
                "--pool=threads",
                "--concurrency=4",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
            ],
            [*celery, "beat", "--loglevel=WARNING"],
        ):
            children.append(spawn(command, env=_celery_env()))
    ready = _wait_until_ready(url, children[0], lambda: requests.count > 0)
    fleet: list[subprocess.Popen[bytes]] = []
    if ready and simulator_token:
        # The demo fleet: simulated runtimes of both demo agents in production, serving what
        # the control plane tells them and reporting back. Started once the web server
        # answers (before, each runtime's first sync fails). The token goes by its file
        # under var/ (mode 0600), never on the command line, which ps shows to everyone.
        # Demo: support-bot busier, so the canary's share sees enough requests within minutes;
        # refund-agent's refunds wait for real humans. Quiet: the fake human decides them.
        rates = {
            "support-bot": _demo_rate("DEMO_SUPPORT_BOT_RPS", 5.0) if demo else 1.0,
            "refund-agent": _demo_rate("DEMO_REFUND_AGENT_RPS", 1.0) if demo else 1.0,
        }
        for agent in ("support-bot", "refund-agent"):
            command = [
                python,
                "-m",
                "dataplane.simulate",
                "--url",
                url,
                "--token-file",
                str(var_dir / "simulator-token"),
                "--runtimes",
                "3",
                "--agent",
                agent,
                "--duration",
                str(10 * 365 * 86400),
                "--rps",
                f"{rates[agent]:g}",
                "--approvals",
                "live" if demo else "simulated",
                "--progress",
                "3600",
                "--instance-prefix",
                f"demo-{agent}",
                "--cache-dir",
                str(var_dir / "simulator"),
            ]
            fleet.append(spawn(command))
    services = list(children)
    children += fleet
    if ready:
        print(
            f"  Dashboard: http://{args.host}:{args.port}/   "
            "(Ctrl-C stops web, worker, beat and the demo fleet)\n",
            flush=True,
        )

    # The demo rollout starts once the fleet served a little: stable's baseline first.
    story_after = _demo_rate("DEMO_ROLLOUT_AFTER_S", 30.0)
    story_at = time.monotonic() + story_after if demo and fleet else None
    if story_at is not None:
        print(
            f"  Demo: in {story_after:g} s a rollout of support-bot v2 to production starts "
            "(unless one ran in the last hour); watch the canary analysis roll it back "
            "(--no-demo-traffic: a quiet fleet)\n",
            flush=True,
        )
    story_tries = 3
    exit_code = 0
    child_exited = False
    while not requests.count and not child_exited:
        if story_at is not None and time.monotonic() >= story_at:
            story_tries -= 1
            done = _story_rollout()
            story_at = None if done or not story_tries else time.monotonic() + 10
        for child in children:
            if child.poll() is not None:
                _say(f"  {_name(child)} exited with {child.returncode}; stopping the rest")
                child_exited, exit_code = True, 1
        time.sleep(0.2)
    _stop_all([(fleet, FLEET_GRACE_S), (services, STOP_GRACE_S)], requests.again)
    _say("  Stopped.")
    return exit_code


if __name__ == "__main__":
    code = main()
    # Everything is stopped and reaped; tearing down this interpreter (all of Django, loaded
    # for the set-up) would add a second or more to Ctrl-C for nothing, so flush and leave.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
