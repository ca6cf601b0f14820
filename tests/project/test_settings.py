"""Settings come from the environment; with nothing set they fall back to the embedded default.

Each case runs in a subprocess with a clean environment, because the settings are read once
at import and the test process has its own."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

DUMP = """
import json
from controlplane.settings import base as s
from controlplane.celery import app
transport = app.connection_for_write().get_transport_cls()
print(json.dumps({
    "transport": f"{transport.__module__}.{transport.__qualname__}",
    "db": {k: s.DATABASES["default"].get(k) for k in ("ENGINE", "NAME", "HOST", "PORT", "USER")},
    "broker": s.CELERY_BROKER_URL,
    "broker_options": getattr(s, "CELERY_BROKER_TRANSPORT_OPTIONS", None),
    "cache": s.CACHES["default"]["BACKEND"],
    "cache_location": s.CACHES["default"].get("LOCATION"),
    "cache_options": s.CACHES["default"].get("OPTIONS"),
    "secret_key": s.SECRET_KEY,
    "debug": s.DEBUG,
    "allowed_hosts": s.ALLOWED_HOSTS,
    "csrf_trusted_origins": s.CSRF_TRUSTED_ORIGINS,
    "beat_schedule": s.CELERY_BEAT_SCHEDULE_FILENAME,
}))
"""


def _clean_env(var_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(var_dir),
        "CONTROLPLANE_VAR_DIR": str(var_dir),
        **extra,
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _settings(var_dir: Path, **extra: str) -> dict[str, Any]:
    result = _run(["-c", DUMP], _clean_env(var_dir, **extra))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --------------------------------------------------------------------------- embedded default


def test_settings__no_environment__sqlite_under_var_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings["db"]["ENGINE"] == "django.db.backends.sqlite3"
    assert settings["db"]["NAME"] == str(tmp_path / "controlplane.sqlite3")


def test_settings__no_environment__filesystem_broker_under_var_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings["broker"] == "filesystem://"
    assert settings["broker_options"]["data_folder_in"] == str(tmp_path / "celery" / "broker")
    assert (tmp_path / "celery" / "broker" / "processed").is_dir()
    assert settings["beat_schedule"] == str(tmp_path / "celery" / "beat-schedule")


def test_settings__no_environment__local_cache_debug_off(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    assert settings["debug"] is False


def test_settings__no_secret_key__generated_once_kept_private_under_var(tmp_path: Path) -> None:
    first = _settings(tmp_path)["secret_key"]
    second = _settings(tmp_path)["secret_key"]
    key_file = tmp_path / "secret_key"
    assert first == second == key_file.read_text().strip()
    assert len(first) >= 50
    assert key_file.stat().st_mode & 0o077 == 0


def test_settings__two_var_dirs__different_secret_keys(tmp_path: Path) -> None:
    assert _settings(tmp_path / "a")["secret_key"] != _settings(tmp_path / "b")["secret_key"]


def test_settings__empty_variables__count_as_unset(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, DATABASE_URL="", REDIS_URL="", CELERY_BROKER_URL="", SECRET_KEY=""
    )
    assert settings["db"]["NAME"] == str(tmp_path / "controlplane.sqlite3")
    assert settings["broker"] == "filesystem://"
    # kombu's filesystem transport, made to notice a stop (Ctrl-C on `make run`) at once
    assert settings["transport"] == "controlplane.broker.FilesystemTransport"
    assert settings["secret_key"] == (tmp_path / "secret_key").read_text().strip()


# --------------------------------------------------------------------------- from the environment


def test_settings__database_url__used(tmp_path: Path) -> None:
    settings = _settings(tmp_path, DATABASE_URL="postgres://cp:pw@db.example.com:5433/controlplane")
    assert settings["db"] == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "controlplane",
        "HOST": "db.example.com",
        "PORT": 5433,
        "USER": "cp",
    }
    assert not (tmp_path / "controlplane.sqlite3").exists()


def test_settings__redis_url__broker_and_cache(tmp_path: Path) -> None:
    settings = _settings(tmp_path, REDIS_URL="redis://redis.example.com:6379/0")
    assert settings["broker"] == "redis://redis.example.com:6379/0"
    assert settings["transport"] == "kombu.transport.redis.Transport"
    # short socket timeouts and a visibility timeout that redelivers within a minute
    options = settings["broker_options"]
    assert options["visibility_timeout"] <= 45
    assert 0 < options["socket_timeout"] <= 2 and 0 < options["socket_connect_timeout"] <= 2
    assert settings["cache"] == "django_redis.cache.RedisCache"
    assert settings["cache_options"]["IGNORE_EXCEPTIONS"] is True
    assert 0 < settings["cache_options"]["SOCKET_TIMEOUT"] <= 2
    assert settings["cache_location"] == "redis://redis.example.com:6379/0"
    assert not (tmp_path / "celery" / "broker").exists()


def test_settings__celery_broker_url__wins_over_redis_url(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, REDIS_URL="redis://redis:6379/0", CELERY_BROKER_URL="redis://redis:6379/1"
    )
    assert settings["broker"] == "redis://redis:6379/1"
    assert settings["transport"] == "kombu.transport.redis.Transport"
    assert settings["cache_location"] == "redis://redis:6379/0"


def test_settings__hosts_origins_secret_debug__from_environment(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        ALLOWED_HOSTS="cp.example.com,.example.org",
        CSRF_TRUSTED_ORIGINS="https://cp.example.com",
        SECRET_KEY="from-the-env",
        DEBUG="true",
    )
    assert settings["allowed_hosts"] == ["cp.example.com", ".example.org"]
    assert settings["csrf_trusted_origins"] == ["https://cp.example.com"]
    assert settings["secret_key"] == "from-the-env"
    assert settings["debug"] is True
    assert not (tmp_path / "secret_key").exists()


# --------------------------------------------------------------------------- production profile


def _production_env(var_dir: Path, **extra: str) -> dict[str, str]:
    return _clean_env(var_dir, DJANGO_SETTINGS_MODULE="controlplane.settings.production", **extra)


def test_production__secret_key_and_hosts_set__deploy_check_passes(tmp_path: Path) -> None:
    env = _production_env(
        tmp_path, SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="cp.example.com"
    )
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production__without_secret_key__fails_naming_it(tmp_path: Path) -> None:
    result = _run(
        ["manage.py", "check", "--deploy"],
        _production_env(tmp_path, ALLOWED_HOSTS="cp.example.com"),
    )
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable" in result.stderr


def test_production__without_allowed_hosts__fails_naming_it(tmp_path: Path) -> None:
    result = _run(
        ["manage.py", "check", "--deploy"],
        _production_env(tmp_path, SECRET_KEY=secrets.token_urlsafe(50)),
    )
    assert result.returncode != 0
    assert "Set the ALLOWED_HOSTS environment variable" in result.stderr


def test_production__collectstatic__builds_the_hashed_manifest(tmp_path: Path) -> None:
    """What the Dockerfile runs at build time: every asset the pages use gets a hashed name."""
    static_root = tmp_path / "static"
    env = _production_env(
        tmp_path / "var",
        SECRET_KEY="collectstatic-only",
        ALLOWED_HOSTS="localhost",
        STATIC_ROOT=str(static_root),
    )
    result = _run(["manage.py", "collectstatic", "--noinput"], env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((static_root / "staticfiles.json").read_text())["paths"]
    for asset in [
        "css/app.css",
        "vendor/pico/pico.min.css",
        "vendor/htmx/htmx.min.js",
        "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
    ]:
        assert (static_root / manifest[asset]).is_file(), asset


@pytest.mark.parametrize(
    "module", ["controlplane.settings.base", "controlplane.settings.production"]
)
def test_settings_module__debug_off_by_default(tmp_path: Path, module: str) -> None:
    code = f"import {module} as s; print(s.DEBUG)"
    env = _clean_env(tmp_path, SECRET_KEY="x", ALLOWED_HOSTS="cp.example.com")
    result = _run(["-c", code], env)
    assert result.stdout.strip() == "False", result.stderr


POOL_DUMP = """
import json
from controlplane.settings import base as s
db = s.DATABASES["default"]
print(json.dumps({"pool": db.get("OPTIONS", {}).get("pool"), "max_age": db["CONN_MAX_AGE"]}))
"""


def _pool_settings(var_dir: Path, **extra: str) -> dict[str, Any]:
    result = _run(["-c", POOL_DUMP], _clean_env(var_dir, **extra))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_settings__database_pool__off_unless_asked(tmp_path: Path) -> None:
    url = "postgres://cp:pw@db.example.com:5432/controlplane"
    assert _pool_settings(tmp_path, DATABASE_URL=url) == {"pool": None, "max_age": 0}
    # SQLite (the embedded default) has no pool even when asked
    assert _pool_settings(tmp_path, DATABASE_POOL="true")["pool"] is None


def test_settings__database_pool__sized_from_environment_without_persistent_connections(
    tmp_path: Path,
) -> None:
    settings = _pool_settings(
        tmp_path,
        DATABASE_URL="postgres://cp:pw@db.example.com:5432/controlplane",
        DATABASE_POOL="true",
        DATABASE_POOL_MAX_SIZE="20",
        CONN_MAX_AGE="60",
    )
    assert settings["pool"]["min_size"] == 2 and settings["pool"]["max_size"] == 20
    assert settings["max_age"] == 0  # Django refuses a pool with persistent connections
