"""``make run`` for real: start ``python -m controlplane.run`` on a fresh var dir (SQLite, the
filesystem broker), use it over HTTP, stop it with Ctrl-C, start it again on the same data
(with ``--no-demo-traffic``: the quiet fleet).

The two runs happen once, in module fixtures that record what they saw; the tests below
assert on those records."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

from ..waiting import eventually

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 90  # generous: the first start migrates a new database
STOP_TIMEOUT = 20
VIEWER_PASSWORD = "Quartz-lantern-47-harbour"  # a test user's, on a throwaway var dir
PASSWORD_LINE = re.compile(
    r"Password \(generated now, also saved to (?P<file>\S+)\): (?P<password>\S+)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(
    url: str, *, data: dict[str, Any] | None = None, token: str = "", runtime: str = ""
) -> tuple[int, str]:
    headers = {"Accept": "application/json, text/html"}
    body = None
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Token {token}"
    if runtime:
        headers["Authorization"] = f"Bearer {runtime}"
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, command line) for every process we can see."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, ppid, sid = fields[0], int(fields[1]), int(fields[3])
        if state != "Z":
            found[int(entry.name)] = (ppid, sid, cmdline)
    return found


@dataclass
class Run:
    """What one start of the product showed, from start to Ctrl-C."""

    process: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    login_status: int = 0
    login_page: str = ""
    children: list[str] = field(default_factory=list)
    # every process of its session (the demo fleet included), as ps shows them to anyone
    command_lines: list[str] = field(default_factory=list)
    exit_code: int | None = None
    left_behind: list[str] = field(default_factory=list)
    stop_seconds: float | None = None  # recorded for the report, never asserted

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _start(var_dir: Path, *flags: str) -> Run:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(var_dir),
        "CONTROLPLANE_VAR_DIR": str(var_dir),
        "PYTHONUNBUFFERED": "1",
        # The demo rollout (tests/project/test_run_demo.py's subject) would write audit events
        # while these tests count them: here it is due long after both runs ended.
        "DEMO_ROLLOUT_AFTER_S": "3600",
    }
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "controlplane.run", "--port", str(port), *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so Ctrl-C can be sent to all of it
    )
    run = Run(process=process, port=port)
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(
        target=lambda: run.lines.extend(iter(stdout.readline, "")), daemon=True
    ).start()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            run.login_status, run.login_page = _http(f"{run.base_url}/login/")
            if run.login_status == 200 and "celery beat" in run.output and "celery@" in run.output:
                break
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    # the demo fleet starts once the web server answers: wait for its processes too
    eventually(
        lambda: sum("dataplane.simulate" in cmd for cmd in _session_commands(run)) == 2,
        timeout=30,
    )
    run.children = [cmd for pid, (ppid, _, cmd) in _processes().items() if ppid == process.pid]
    run.command_lines = _session_commands(run)
    return run


def _session_commands(run: Run) -> list[str]:
    return [cmd for pid, (_, sid, cmd) in _processes().items() if sid == run.process.pid]


def _stop(run: Run, *, twice: bool = False) -> None:
    """Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group (which
    holds make run alone: it stops its children itself). ``twice``: a second Ctrl-C while
    it stops (impatience), which kills what is left."""
    started = time.monotonic()
    if run.process.poll() is None:
        os.killpg(run.process.pid, signal.SIGINT)
        if twice:
            time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGINT)
    try:
        run.exit_code = run.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        run.exit_code = None
    run.stop_seconds = time.monotonic() - started
    print(f"make run stopped {run.stop_seconds:.1f} s after Ctrl-C")  # shown with -s
    time.sleep(0.5)  # let the kernel finish tearing down exited children before looking
    run.left_behind = _session_commands(run)


def _forbidden_page(run: Run, token: str) -> int:
    """A Viewer (made through the API) logs in through the form, changes the initial password
    as the product asks, and opens the users page, which only Admins may: returns its status
    (403)."""
    status, body = _http(
        f"{run.base_url}/api/v1/users/",
        token=token,
        data={"username": "smoke-viewer", "role": "Viewer", "password": VIEWER_PASSWORD},
    )
    assert status == 201, body
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    with opener.open(f"{run.base_url}/login/", timeout=10) as response:
        form = response.read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert csrf, form
    login = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": csrf[1],
            "username": "smoke-viewer",
            "password": VIEWER_PASSWORD,
        }
    ).encode()
    with opener.open(f"{run.base_url}/login/", data=login, timeout=10) as response:
        assert "/login/" not in response.url, "the Viewer's login failed"
        # an initial password: the product sends the new user to change it first
        assert response.url.endswith("/profile/password/"), response.url
        form = response.read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert csrf, form
    change = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": csrf[1],
            "old_password": VIEWER_PASSWORD,
            "new_password1": VIEWER_PASSWORD + "-changed",
            "new_password2": VIEWER_PASSWORD + "-changed",
        }
    ).encode()
    with opener.open(f"{run.base_url}/profile/password/", data=change, timeout=10) as response:
        assert not response.url.endswith("/profile/password/"), "the password change failed"
    try:
        with opener.open(f"{run.base_url}/users/", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def kill_session(session: int) -> None:
    """SIGKILL every process of ``session`` (make run started with ``start_new_session``:
    its id). Each child of make run has its own process group in it, so the session, not a
    process group, is what holds them all."""
    for pid, (_, sid, _) in _processes().items():
        if sid == session:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _kill_leftovers(run: Run) -> None:
    # Only if a test failed half-way: never leave our own session running.
    if run.process.poll() is None or run.left_behind:
        kill_session(run.process.pid)


@dataclass
class Runs:
    first: Run
    second: Run
    password: str
    password_file: str
    token_status: int
    token: str
    me_with_token: tuple[int, str]
    audit_count_after_first: int
    audit_count_at_second_start: int
    old_token_on_second: tuple[int, str]
    password_on_second: int
    tenants_on_second: dict[str, Any]
    agents_on_second: dict[str, Any]
    beat_schedule_files: list[str]
    reservations: list[tuple[int, dict[str, Any]]]
    forbidden_status: int


def _audit_count(run: Run, token: str) -> int:
    """Events written by set-up (migrate, first Admin, demo data, the demo fleet's token). The
    demo fleet's own events (runtime.registered …) come whenever its runtimes connect."""
    status, body = _http(f"{run.base_url}/api/v1/audit-events/?actor=system:", token=token)
    assert status == 200, body
    return int(json.loads(body)["count"])


def _strict_budget_reservations(run: Run, token: str) -> list[tuple[int, dict[str, Any]]]:
    """On the embedded default (SQLite, the fast path in front): a strict $1 budget of the
    demo's refund-agent made through the API, a runtime token, then reservations through the
    fast path until one is refused, and a settle. Returns each (status, body)."""
    base = run.base_url
    tenants = json.loads(_http(f"{base}/api/v1/tenants/?slug=acme", token=token)[1])["results"]
    tenant = tenants[0]["id"]
    environments = json.loads(
        _http(f"{base}/api/v1/environments/?tenant={tenant}", token=token)[1]
    )["results"]
    production = next(e["id"] for e in environments if e["slug"] == "production")
    status, body = _http(
        f"{base}/api/v1/budgets/",
        token=token,
        data={
            "tenant": tenant,
            "name": "smoke strict",
            "scope": "agent",
            "agent": "refund-agent",
            "window": "day",
            "limits": {"cost_usd": "1"},
            "action": "block",
            "strict": True,
        },
    )
    assert status == 201, body
    status, body = _http(
        f"{base}/api/v1/runtime-tokens/",
        token=token,
        data={"environment": production, "name": "smoke runtime"},
    )
    assert status == 201, body
    runtime = json.loads(body)["token"]
    answers = []
    for step in range(3):
        status, body = _http(
            f"{base}/api/runtime/v1/budgets/reserve",
            runtime=runtime,
            data={
                "reservation_id": f"smoke:{step}",
                "request_id": "smoke",
                "agent": "refund-agent",
                "estimate": {"cost_usd": "0.45"},
            },
        )
        answers.append((status, json.loads(body)))
    status, body = _http(
        f"{base}/api/runtime/v1/budgets/settle",
        runtime=runtime,
        data={"reservation_id": "smoke:0", "actual": {"cost_usd": "0.40"}},
    )
    answers.append((status, json.loads(body)))
    return answers


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    var_dir = tmp_path_factory.mktemp("var")
    first = _start(var_dir)
    try:
        match = PASSWORD_LINE.search(first.output)
        password = match["password"] if match else ""
        token_status, body = _http(
            f"{first.base_url}/api/v1/auth/token/", data={"username": "admin", "password": password}
        )
        token = json.loads(body).get("token", "") if token_status == 200 else ""
        me = _http(f"{first.base_url}/api/v1/me/", token=token)
        audit_after_first = _audit_count(first, token)
        # beat opens its schedule file after printing its banner (which readiness waits for):
        # on a busy machine that can be seconds later
        eventually(lambda: any((var_dir / "celery").glob("beat-schedule*")), timeout=30)
        beat_files = [p.name for p in (var_dir / "celery").glob("beat-schedule*")]
        reservations = _strict_budget_reservations(first, token)
        forbidden_status = _forbidden_page(first, token)
        time.sleep(0.5)  # the server's log line reaches the pipe
    finally:
        _stop(first)
        _kill_leftovers(first)

    # the quiet fleet, on the same data
    second = _start(var_dir, "--no-demo-traffic")
    try:
        audit_at_second = _audit_count(second, token)
        old_token = _http(f"{second.base_url}/api/v1/me/", token=token)
        tenants = json.loads(_http(f"{second.base_url}/api/v1/tenants/", token=token)[1])
        agents = json.loads(_http(f"{second.base_url}/api/v1/agents/", token=token)[1])
        # last: obtaining a token replaces the one used above
        password_status, _ = _http(
            f"{second.base_url}/api/v1/auth/token/",
            data={"username": "admin", "password": password},
        )
    finally:
        _stop(second, twice=True)
        _kill_leftovers(second)

    yield Runs(
        first=first,
        second=second,
        password=password,
        password_file=match["file"] if match else "",
        token_status=token_status,
        token=token,
        me_with_token=me,
        audit_count_after_first=audit_after_first,
        audit_count_at_second_start=audit_at_second,
        old_token_on_second=old_token,
        password_on_second=password_status,
        tenants_on_second=tenants,
        agents_on_second=agents,
        beat_schedule_files=beat_files,
        reservations=reservations,
        forbidden_status=forbidden_status,
    )


# --------------------------------------------------------------------------- first start


def test_run_first_start__serves_the_login_form(runs: Runs) -> None:
    assert runs.first.login_status == 200, runs.first.output
    assert '<form method="post"' in runs.first.login_page
    assert 'name="username"' in runs.first.login_page
    assert 'name="password"' in runs.first.login_page


def test_run_first_start__prints_how_to_log_in_with_a_generated_password(runs: Runs) -> None:
    assert "Log in as 'admin'." in runs.first.output
    assert len(runs.password) >= 12, runs.first.output
    assert Path(runs.password_file).read_text().strip() == runs.password
    assert Path(runs.password_file).stat().st_mode & 0o077 == 0


def test_run_first_start__printed_password_logs_in(runs: Runs) -> None:
    assert runs.token_status == 200
    status, body = runs.me_with_token
    assert status == 200, body
    assert json.loads(body)["username"] == "admin"
    assert json.loads(body)["role"] == "Admin"


def test_run_first_start__web_worker_and_beat_running(runs: Runs) -> None:
    commands = runs.first.children
    assert any("uvicorn controlplane.asgi:application" in c for c in commands), commands
    assert any("celery -A controlplane worker" in c for c in commands), commands
    assert any("celery -A controlplane beat" in c for c in commands), commands
    assert "celery@" in runs.first.output  # the worker's banner: it connected to the broker
    assert "celery beat" in runs.first.output  # beat's banner
    assert runs.beat_schedule_files


def test_run_first_start__loads_the_demo_data(runs: Runs) -> None:
    assert "demo data ready: tenant acme" in runs.first.output


def test_run_first_start__strict_budget_reserves_on_the_embedded_database(runs: Runs) -> None:
    (s1, first), (s2, second), (s3, third), (s4, settled) = runs.reservations
    assert (s1, s2, s3, s4) == (200, 200, 200, 200)
    assert first["granted"] and second["granted"] and not third["granted"]
    # $1 less two holds of $0.45, less what the demo fleet already spent today
    assert third["refused_by"]["metric"] == "cost_usd"
    assert 0 <= Decimal(third["refused_by"]["remaining"]) <= Decimal("0.1")
    assert settled == {"reservation_id": "smoke:0", "status": "settled", "duplicate": False}


def test_run_ctrl_c__exits_zero_and_leaves_no_process_behind(runs: Runs) -> None:
    # every child gone once the parent returned (STOP_TIMEOUT is a generous bound, not a
    # target: the stop takes about 2 s, printed by _stop)
    assert runs.first.exit_code == 0, runs.first.output
    assert runs.first.left_behind == []
    assert "Stopped." in runs.first.output


def test_run_first_start__demo_fleet_starts_once_the_server_answers(runs: Runs) -> None:
    output = runs.first.output
    assert sum("dataplane.simulate" in cmd for cmd in runs.first.command_lines) == 2
    assert "sync_failed" not in output
    assert output.index("Dashboard: http://") > output.index("Log in as 'admin'.")


def test_run_first_start__no_secret_on_any_command_line(runs: Runs) -> None:
    # /proc/<pid>/cmdline is readable by every user of the machine (ps)
    assert runs.first.command_lines
    assert [cmd for cmd in runs.first.command_lines if "cprt_" in cmd] == []
    assert all("--token " not in cmd for cmd in runs.first.command_lines)


def test_run_first_start__a_refused_page_is_one_log_line(runs: Runs) -> None:
    assert runs.forbidden_status == 403
    lines = [line for line in runs.first.output.splitlines() if "/users/" in line]
    assert lines == ["Forbidden (Permission denied): /users/"]
    assert "Traceback" not in runs.first.output


def test_run_first_start__no_warning_banners(runs: Runs) -> None:
    output = runs.first.output
    assert "superuser privileges" not in output  # Celery's, as root (one line of ours instead)
    assert "Invalid -W option" not in output


# --------------------------------------------------------------------------- second start


def test_run_second_start__prints_no_new_password(runs: Runs) -> None:
    assert runs.second.login_status == 200, runs.second.output
    assert "Log in as 'admin'." in runs.second.output
    assert "generated now" not in runs.second.output
    assert PASSWORD_LINE.search(runs.second.output) is None
    assert runs.password not in runs.second.output
    assert f"The password generated at first run is in {runs.password_file}" in runs.second.output


def test_run_second_start__reuses_users_tokens_and_data(runs: Runs) -> None:
    assert runs.password_on_second == 200
    assert runs.old_token_on_second[0] == 200
    assert runs.audit_count_at_second_start == runs.audit_count_after_first
    assert [t["slug"] for t in runs.tenants_on_second["results"]] == ["acme"]
    assert sorted(a["slug"] for a in runs.agents_on_second["results"]) == [
        "refund-agent",
        "support-bot",
    ]


def test_run_first_start__demo_fleet_opens_real_approval_requests(runs: Runs) -> None:
    fleet = [cmd for cmd in runs.first.command_lines if "dataplane.simulate" in cmd]
    assert len(fleet) == 2
    assert all("--approvals live" in cmd for cmd in fleet), fleet
    assert "budget refund-agent hourly (demo) created" in runs.first.output


def test_run_second_start__no_demo_traffic__quiet_fleet_no_story(runs: Runs) -> None:
    fleet = [cmd for cmd in runs.second.command_lines if "dataplane.simulate" in cmd]
    assert len(fleet) == 2
    assert all("--approvals simulated" in cmd and "--rps 1 " in cmd for cmd in fleet), fleet
    assert "demo rollout" not in runs.second.output


def test_run_second_start__stops_cleanly_too(runs: Runs) -> None:
    # stopped with two Ctrl-Cs: what the first had not stopped yet is killed, nothing is left
    assert runs.second.exit_code == 0, runs.second.output
    assert runs.second.left_behind == []
    assert "Stopped." in runs.second.output
