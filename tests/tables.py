"""Row counts of every model's table, for the tests that check a refused request changed
nothing: read in one query (they count before and after each of hundreds of requests, and one
count query per model made most of their time)."""

from __future__ import annotations

from collections.abc import Collection

from django.apps import apps as django_apps
from django.db import connection


def row_counts(*, except_apps: Collection[str] = ()) -> dict[str, int]:
    """``{model label: rows in its table}`` for every installed model but those of
    ``except_apps`` (app labels). The models' default managers filter nothing, so this is each
    ``Model._default_manager.count()``."""
    models = [m for m in django_apps.get_models() if m._meta.app_label not in except_apps]
    counts = ", ".join(
        f"(SELECT COUNT(*) FROM {connection.ops.quote_name(m._meta.db_table)})" for m in models
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {counts}")
        row = cursor.fetchone()
    return {m._meta.label: count for m, count in zip(models, row, strict=True)}
