"""Test profile: the base settings with fast hashing.

The database comes from DATABASE_URL, which the test command sets to PostgreSQL when one
answers (see tests/conftest.py and the Makefile)."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = False
