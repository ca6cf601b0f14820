"""Test profile: the base settings with fast hashing.

The database comes from DATABASE_URL, which the test command sets to PostgreSQL when one
answers (see tests/conftest.py and the Makefile)."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = False

if DATABASES["default"]["ENGINE"].endswith("postgresql"):  # noqa: F405
    # Tests empty every table between transactional tests with TRUNCATE, which the audit
    # tables refuse; the test database's superuser may lift that (see audit migration 0003).
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (  # noqa: F405
        "-c controlplane.allow_audit_truncate=on"
    )
