"""Test profile: the base settings with fast hashing.

The database comes from DATABASE_URL, which the test command sets to PostgreSQL when one
answers (see tests/conftest.py and the Makefile)."""

import os
from pathlib import Path

# scripts/test.sh runs the suite in several pytest-xdist worker processes (PYTEST_XDIST_WORKER
# is gw0, gw1, …, set before the settings are imported). Each gets a var dir of its own under
# the configured one — the embedded signing key, the secret key file and the filesystem
# broker's queue are per process, as each worker's test database is (pytest-django's _gw<n>).
if _worker := os.environ.get("PYTEST_XDIST_WORKER"):
    _var = os.environ.get("CONTROLPLANE_VAR_DIR") or str(Path(__file__).parents[2] / "var")
    if Path(_var).name != _worker:  # already set: a process a worker started inherits it
        os.environ["CONTROLPLANE_VAR_DIR"] = str(Path(_var) / _worker)

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = False

if DATABASES["default"]["ENGINE"].endswith("postgresql"):  # noqa: F405
    # Tests empty every table between transactional tests with TRUNCATE, which the audit
    # tables refuse; the test database's superuser may lift that (see audit migration 0003).
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (  # noqa: F405
        "-c controlplane.allow_audit_truncate=on"
    )
