"""The production deployment files, checked without a Docker engine: docker-compose.yml is
parsed with PyYAML, the Dockerfile with the small parser below."""

from __future__ import annotations

import fnmatch
import http.server
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from controlplane import healthcheck

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ["web", "worker", "beat"]
LONG_RUNNING = ["postgres", "redis", *APP_SERVICES]
BUILD_TOOLS = {
    "gcc",
    "g++",
    "cc",
    "make",
    "build-essential",
    "clang",
    "libpq-dev",
    "python3-dev",
    "libc6-dev",
    "git",
    "curl",
    "wget",
}


# --------------------------------------------------------------------------- parsing helpers


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def _dockerfile() -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    return instructions


def _stages() -> dict[str, list[Instruction]]:
    stages: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for instruction in _dockerfile():
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            current = [instruction]
            stages[name] = current
        else:
            current.append(instruction)
    return stages


def _final_stage() -> list[Instruction]:
    return list(_stages().values())[-1]


def _runs(stage: list[Instruction]) -> str:
    return "\n".join(i.args for i in stage if i.keyword == "RUN")


def _commands(stage: list[Instruction]) -> list[list[str]]:
    """The shell commands of a stage's RUN instructions, each as its argv."""
    commands: list[list[str]] = []
    for instruction in stage:
        if instruction.keyword != "RUN":
            continue
        lexer = shlex.shlex(instruction.args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in ("&&", "||", ";", "|", "&"):
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return [c for c in commands if c]


def _installed_packages(stage: list[Instruction]) -> set[str]:
    """Package names passed to apt-get install / apk add."""
    packages: set[str] = set()
    for words in _commands(stage):
        for i, word in enumerate(words):
            if (word == "install" and "apt-get" in words[:i]) or (
                word == "add" and "apk" in words[:i]
            ):
                packages |= {w for w in words[i + 1 :] if not w.startswith("-")}
    return packages


def _exec_form(args: str) -> list[str]:
    return list(YAML(typ="safe", pure=True).load(args))  # a JSON array is valid YAML


def _compose() -> dict[str, Any]:
    # Compose reads YAML 1.2 (compose-go), so the test does too.
    loaded: dict[str, Any] = YAML(typ="safe", pure=True).load(
        (ROOT / "docker-compose.yml").read_text()
    )
    return loaded


def _service(name: str) -> dict[str, Any]:
    return _compose()["services"][name]


def _healthcheck_command(name: str) -> str:
    test = _service(name)["healthcheck"]["test"]
    return " ".join(test[1:]) if isinstance(test, list) else str(test)


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile__stages__builder_then_slim_python_311_runtime() -> None:
    stages = _stages()
    assert list(stages) == ["builder", "runtime"]
    assert stages["runtime"][0].args.split()[0] == "python:3.11-slim"


def test_dockerfile_builder_stage__has_build_tools_and_builds_wheels() -> None:
    builder = _stages()["builder"]
    assert {"build-essential", "gcc"} <= _installed_packages(builder)
    assert "pip wheel --wheel-dir /wheels" in _runs(builder)


def test_dockerfile_final_stage__installs_no_build_tools() -> None:
    final = _final_stage()
    assert _installed_packages(final) & BUILD_TOOLS == set()
    assert not re.search(r"\b(gcc|build-essential|make)\b", _runs(final))


def test_dockerfile_final_stage__installs_only_the_builders_wheels() -> None:
    final = _final_stage()
    copies = [i.args for i in final if i.keyword == "COPY" and i.args.startswith("--from=")]
    assert copies == ["--from=builder /wheels /tmp/wheels"]
    assert "pip install --no-index --find-links=/tmp/wheels" in _runs(final)


def test_dockerfile_final_stage__runs_as_a_created_non_root_user() -> None:
    final = _final_stage()
    users = [i.args.split(":")[0] for i in final if i.keyword == "USER"]
    assert users, "the final stage must switch to a non-root USER"
    assert users[-1] not in ("root", "0")
    assert re.search(rf"useradd [^\n]*--uid \d+ [^\n]*\b{users[-1]}\b", _runs(final))
    after_user = final[[i.keyword for i in final].index("USER") :]
    assert [i for i in after_user if i.keyword == "RUN"] == []


def test_dockerfile_final_stage__code_owned_by_root_only_var_dir_writable() -> None:
    final = _final_stage()
    code_copies = [
        i.args for i in final if i.keyword == "COPY" and not i.args.startswith("--from=")
    ]
    assert code_copies, "the code must be copied into the image"
    assert all("--chown" not in c and "--chmod" not in c for c in code_copies)
    chowned = re.findall(r"chown\s+(?:-R\s+)?\S+\s+(\S+)", _runs(final))
    assert chowned == ['"$CONTROLPLANE_VAR_DIR"']
    assert "chmod -R u=rwX,go=rX /app" in _runs(final)
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "CONTROLPLANE_VAR_DIR=/var/lib/controlplane" in env


def test_dockerfile_final_stage__copies_everything_the_app_needs() -> None:
    copied = {
        i.args.split()[0]
        for i in _final_stage()
        if i.keyword == "COPY" and not i.args.startswith("--")
    }
    assert {"manage.py", "controlplane", "apps", "templates", "static"} <= copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, p) for p in _dockerignore_patterns()), source


def test_dockerfile__collectstatic_at_build_time_with_production_settings() -> None:
    final = _final_stage()
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "DJANGO_SETTINGS_MODULE=controlplane.settings.production" in env
    assert "STATIC_ROOT=/app/staticfiles" in env
    assert "manage.py collectstatic --noinput" in _runs(final)


def test_dockerfile__cmd_runs_uvicorn_with_the_asgi_application() -> None:
    cmd = [i for i in _final_stage() if i.keyword == "CMD"]
    assert len(cmd) == 1
    argv = _exec_form(cmd[0].args)
    assert argv[:2] == ["uvicorn", "controlplane.asgi:application"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def _web_argvs() -> list[list[str]]:
    cmd = next(i for i in _final_stage() if i.keyword == "CMD")
    return [_exec_form(cmd.args), list(_service("web")["command"])]


@pytest.mark.parametrize("where", ["Dockerfile", "docker-compose.yml"])
def test_web_server__does_not_take_client_addresses_from_anyones_forwarded_for(
    where: str,
) -> None:
    # uvicorn with --forwarded-allow-ips "*" takes the client address from the left of
    # X-Forwarded-For, which the client writes: login lockouts and throttles would count
    # per address of the attacker's choosing (NUM_PROXIES decides in Django instead).
    argv = _web_argvs()[["Dockerfile", "docker-compose.yml"].index(where)]
    trusted = (
        argv[argv.index("--forwarded-allow-ips") + 1] if "--forwarded-allow-ips" in argv else ""
    )
    assert "*" not in trusted


def test_env_example__does_not_tell_uvicorn_to_trust_every_forwarded_for() -> None:
    # uvicorn reads FORWARDED_ALLOW_IPS from the environment compose passes it.
    lines = (ROOT / ".env.example").read_text().splitlines()
    values = [line.split("=", 1)[1] for line in lines if line.startswith("FORWARDED_ALLOW_IPS=")]
    assert values and all("*" not in v for v in values)


def test_dockerfile__healthcheck_uses_the_projects_probe() -> None:
    healthchecks = [i.args for i in _final_stage() if i.keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert _exec_form(healthchecks[0].split("CMD", 1)[1]) == [
        "python",
        "-m",
        "controlplane.healthcheck",
        "web",
    ]


# --------------------------------------------------------------------------- docker-compose.yml


def test_compose__services__database_broker_app_and_migrate_step() -> None:
    assert set(_compose()["services"]) == {"postgres", "redis", "migrate", "web", "worker", "beat"}


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_compose_service__long_running__has_a_health_check(name: str) -> None:
    healthcheck_ = _service(name)["healthcheck"]
    assert healthcheck_["test"][0] in ("CMD", "CMD-SHELL")
    assert healthcheck_.get("disable") is not True
    assert {"interval", "timeout", "retries"} <= set(healthcheck_)


@pytest.mark.parametrize("name", ["migrate", *APP_SERVICES])
def test_compose_app_service__built_from_the_dockerfile_with_env_file(name: str) -> None:
    service = _service(name)
    assert service["build"] == "."
    assert service["env_file"] == ".env"
    assert service["read_only"] is True
    assert "controlplane-var:/var/lib/controlplane" in service["volumes"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_app_service__waits_for_healthy_services_and_migrations(name: str) -> None:
    assert _service(name)["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }


def test_compose_migrate__one_shot_after_healthy_database() -> None:
    migrate = _service("migrate")
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_compose_postgres_and_redis__env_file_and_probes() -> None:
    assert _service("postgres")["env_file"] == ".env"
    assert "pg_isready" in _healthcheck_command("postgres")
    assert _healthcheck_command("redis") == "redis-cli ping"


@pytest.mark.parametrize(
    ("name", "argv_start"),
    [
        ("web", ["uvicorn", "controlplane.asgi:application"]),
        ("worker", ["celery", "-A", "controlplane", "worker"]),
        ("beat", ["celery", "-A", "controlplane", "beat"]),
    ],
)
def test_compose_app_service__command(name: str, argv_start: list[str]) -> None:
    command = _service(name)["command"]
    assert command[: len(argv_start)] == argv_start


@pytest.mark.parametrize(
    ("name", "probe"),
    [
        ("web", "python -m controlplane.healthcheck web"),
        ("worker", "celery -A controlplane inspect ping"),
        ("beat", "python -m controlplane.healthcheck broker"),
    ],
)
def test_compose_app_service__health_probe(name: str, probe: str) -> None:
    assert _healthcheck_command(name).startswith(probe)


def test_compose_variables__all_defined_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", text))
    used |= set(re.findall(r"\$\$\{([A-Z_]+)\}", text))
    assert used <= set(_env_example()), used - set(_env_example())


# ------------------------------------------------------------------ .env.example, .dockerignore


def test_env_example__names_every_production_setting() -> None:
    env = _env_example()
    assert {
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "DJANGO_SETTINGS_MODULE",
        "DEBUG",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
    } <= set(env)
    assert env["DJANGO_SETTINGS_MODULE"] == "controlplane.settings.production"
    assert env["DEBUG"] == "False"
    assert (
        env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
    )
    assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379")


def test_env_example__database_url_matches_postgres_credentials() -> None:
    env = _env_example()
    expected = f"postgres://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/{env['POSTGRES_DB']}"
    assert env["DATABASE_URL"] == expected


def test_dockerignore__keeps_secrets_and_local_state_out_of_the_image() -> None:
    patterns = _dockerignore_patterns()
    assert {".env", ".git", ".venv", "var"} <= set(patterns)
    assert "!.env.example" in patterns


# --------------------------------------------------------------------------- the health probe


@pytest.mark.parametrize(
    ("allowed_hosts", "expected"),
    [
        ("controlplane.example.com,localhost", "controlplane.example.com"),
        (" , .example.com", "example.com"),
        ("*", "localhost"),
        ("", "localhost"),
    ],
)
def test_healthcheck_probe_host__picks_a_host_django_accepts(
    allowed_hosts: str, expected: str
) -> None:
    assert healthcheck.probe_host(allowed_hosts) == expected


@pytest.fixture
def stub_server() -> Iterator[tuple[int, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, **{k: v for k, v in self.headers.items()}})
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_healthcheck_web__sends_allowed_host_and_https_proto(stub_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    port, seen = stub_server
    monkeypatch.setenv("ALLOWED_HOSTS", "cp.example.com")

    assert healthcheck.main(["web", "--port", str(port)]) == 0

    assert seen[0]["path"] == "/healthz"
    assert seen[0]["Host"] == "cp.example.com"
    assert seen[0]["X-Forwarded-Proto"] == "https"


def test_healthcheck_web__nothing_listening__unhealthy() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing answers there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert healthcheck.main(["web", "--port", str(port)]) == 1


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs Redis (TEST_REDIS_URL)")
def test_healthcheck_broker__redis_answers__healthy(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CELERY_BROKER_URL", os.environ["TEST_REDIS_URL"])
    assert healthcheck.main(["broker"]) == 0


def test_healthcheck_broker__unreachable__unhealthy(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    assert healthcheck.main(["broker"]) == 1


@pytest.fixture
def production_server(tmp_path: Path) -> Iterator[int]:
    """uvicorn serving the production profile, as the web container runs it (SQLite here)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings.production",
        "SECRET_KEY": "x" * 60,
        "ALLOWED_HOSTS": "cp.example.com",
        "CONTROLPLANE_VAR_DIR": str(tmp_path / "var"),
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "controlplane.asgi:application",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.mark.slow
def test_healthcheck_web__production_profile__healthy_where_a_bare_request_is_not(
    production_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOWED_HOSTS", "cp.example.com")
    bare = urllib.request.Request(f"http://127.0.0.1:{production_server}/healthz")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bare, timeout=5)
    assert refused.value.code == 400  # not an allowed host

    assert healthcheck.main(["web", "--port", str(production_server)]) == 0
