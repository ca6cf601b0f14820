#!/usr/bin/env bash
# The whole test command: static checks, then pytest against PostgreSQL and Redis when they
# answer (SQLite and no Redis otherwise, said out loud). With CONTROLPLANE_REQUIRE_SERVICES=1
# (set by .ci/run) a missing PostgreSQL or Redis is a failure instead.
set -euo pipefail
cd "$(dirname "$0")/.."
V=.venv/bin
export CONTROLPLANE_VAR_DIR="${CONTROLPLANE_VAR_DIR:-$PWD/var/test}"
mkdir -p "$CONTROLPLANE_VAR_DIR"

PG_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
# pytest-xdist worker n uses Redis database <this one + n> (tests/conftest.py): 12 leaves room
# for four workers.
REDIS="${TEST_REDIS_URL:-redis://127.0.0.1:6379/12}"
require="${CONTROLPLANE_REQUIRE_SERVICES:-0}"

if $V/python - "$PG_URL" <<'PY'
import sys, psycopg
try:
    psycopg.connect(sys.argv[1].replace("postgres://", "postgresql://"), connect_timeout=3).close()
except Exception as exc:
    print(f"PostgreSQL not reachable: {exc}", file=sys.stderr); sys.exit(1)
PY
then
  export DATABASE_URL="$PG_URL"; echo "tests: database PostgreSQL ($PG_URL)"
elif [ "$require" = 1 ]; then
  echo "tests: PostgreSQL is required (CONTROLPLANE_REQUIRE_SERVICES=1) but does not answer" >&2; exit 1
else
  unset DATABASE_URL; echo "tests: PostgreSQL does not answer; FALLING BACK TO SQLITE"
fi

if $V/python -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_timeout=3).ping()" "$REDIS" 2>/dev/null; then
  export TEST_REDIS_URL="$REDIS"; echo "tests: Redis $REDIS"
elif [ "$require" = 1 ]; then
  echo "tests: Redis is required (CONTROLPLANE_REQUIRE_SERVICES=1) but does not answer" >&2; exit 1
else
  unset TEST_REDIS_URL; echo "tests: Redis does not answer; Redis tests will skip"
fi

# Browser tests use Debian's Chromium; install it when missing and we may (never a download
# of a browser build by a test tool).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "tests: installing Debian chromium + chromium-driver"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null
  elif [ "$require" = 1 ]; then
    echo "tests: chromium is required but missing" >&2; exit 1
  fi
fi

echo "== ruff";          $V/ruff check --quiet .
echo "== import contracts"; $V/lint-imports --no-cache >/dev/null && echo "contracts kept"
echo "== migrations";    $V/python manage.py makemigrations --check --dry-run --settings=controlplane.settings.test >/dev/null && echo "no missing migrations"
echo "== mypy";          $V/mypy --no-error-summary . && echo "mypy clean"
# In parallel with pytest-xdist: at most 4 workers, none on a single core
# (TEST_WORKERS overrides; `-n 0` as an argument runs serially too). Whole files go to one worker
# (--dist loadfile): a file's module fixtures (a started product, a browser) are set up once.
# Each worker has its own test database (_gw<n>), Redis database and var dir; see docs/ci.md.
# One worker more than there are cores: much of the suite waits (on browsers, started products,
# long-polls), and a third worker on 2 cores fills that time (measured: 844 s -> 773 s).
if [ -z "${TEST_WORKERS:-}" ]; then
  CORES=$(nproc 2>/dev/null || echo 1)
  TEST_WORKERS=$((CORES + 1))
  [ "$TEST_WORKERS" -gt 4 ] && TEST_WORKERS=4
  [ "$CORES" -lt 2 ] && TEST_WORKERS=0
fi
if ! $V/python -c "import xdist" 2>/dev/null; then
  echo "== pytest (serial: pytest-xdist is not installed; make install-dev)"
  exec $V/pytest -p no:cacheprovider "$@"
fi
echo "== pytest ($TEST_WORKERS workers)"
exec $V/pytest -p no:cacheprovider -n "$TEST_WORKERS" --dist loadfile "$@"
