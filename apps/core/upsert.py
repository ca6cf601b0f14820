"""Insert-or-update many rows in a few statements, knowing which rows were new.

``upsert(model, rows, conflict=..., update=... | add=...)`` writes ``rows`` with SQL's
``INSERT … ON CONFLICT (<conflict>) DO UPDATE | DO NOTHING … RETURNING`` and answers, for
each row in the order given, its primary key and whether this call inserted it. Uses:

- idempotent inserts: ``update`` None stores each row once; a retried batch inserts nothing
  and the caller sees which rows were new. (Telemetry ingestion keeps its own statements:
  its key insert also creates missing day partitions and its rollups upsert two tables in
  one statement, on the hot path; see ``apps/telemetry/services.py`` and decision 0021.)
- counters: ``upsert(FlagUsage, rows, conflict=[…], add=["yes", "no"], saturate_at=2**63-1)``
  adds the new counts to the stored ones in the database, never read-modify-write
  (CONVENTIONS.md, "Counters change with F() expressions or a PostgreSQL upsert");
- last-writer-wins state: ``update=["last_seen_at", …]`` overwrites those fields.

How "inserted" is known: on PostgreSQL, a ``DO UPDATE`` statement returns ``xmax = 0`` for
the rows it inserted (an updated row version carries the updating transaction in ``xmax``),
so one statement does it. Elsewhere (SQLite, the embedded default, 3.35 or later for
``RETURNING``) and for ``DO NOTHING``, a first ``DO NOTHING … RETURNING`` statement inserts
what is new and returns exactly those rows; a second ``DO UPDATE`` statement then updates
the rest. Both are correct under concurrency: PostgreSQL's ``ON CONFLICT`` waits for a
concurrent inserter of the same key and then treats its row as a conflict; SQLite has one
writer at a time and the first statement takes the write lock for the transaction.

It runs raw SQL (Django's ``bulk_create(update_conflicts=True)`` cannot say which rows were
inserted, nor add to a stored value), so values are adapted by each field's
``get_db_prep_value``; names are the model's own, quoted, never the caller's strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

from django.db import NotSupportedError, connection, transaction
from django.db.models import Model, Q

BATCH_SIZE = 100  # rows per statement: well under SQLite's limit on bound parameters


@dataclass(frozen=True)
class Upserted:
    """One row's outcome: its primary key and whether this call inserted it (False: it
    existed and was updated, or left alone when nothing was to be updated)."""

    pk: Any
    inserted: bool


def upsert(
    model: type[Model],
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    update: Sequence[str] | None = None,
    add: Sequence[str] = (),
    saturate_at: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> list[Upserted]:
    """Insert each of ``rows`` or, when a row with the same ``conflict`` values exists,
    update it; returns one :class:`Upserted` per row, in the order of ``rows``.

    - ``rows``: mappings of field name to Python value (foreign keys by attname with the id,
      ``environment_id=3``, so stored and given values compare), every row with the same
      keys, which must include every ``conflict`` field; no two rows may share their
      ``conflict`` values (``ValueError``).
    - ``conflict``: the fields of a unique constraint or index (without condition) of
      ``model``; the database raises ``ProgrammingError``/``OperationalError`` otherwise.
    - ``update``: fields overwritten with the row's value on conflict; ``add``: fields the
      row's value is added to on conflict (counters), capped at ``saturate_at`` when given
      (compared before adding, so the sum itself never overflows). Neither: an existing row
      is left as it is (idempotent insert).

    Runs in one transaction (the caller's, or its own). The primary keys of rows that
    existed are read back after the write. Raises ``NotSupportedError`` on a database
    without ``INSERT … ON CONFLICT … RETURNING`` (SQLite before 3.35)."""
    if not rows:
        return []
    meta = model._meta
    names = list(rows[0].keys())
    fields = [meta.get_field(name) for name in names]
    columns: dict[str, str] = {
        name: str(field.column)  # type: ignore[union-attr]
        for name, field in zip(names, fields, strict=True)
    }
    for name in [*conflict, *(update or ()), *add]:
        if name not in columns:
            raise ValueError(f"{name!r} is not a key of the rows")
    keys = [_key(row, conflict) for row in rows]
    if len(set(keys)) != len(keys):
        raise ValueError("two rows share their conflict values; merge them first")
    if not connection.features.can_return_rows_from_bulk_insert:
        raise NotSupportedError("upsert needs INSERT … RETURNING (SQLite 3.35 or later)")
    qn = connection.ops.quote_name
    table = qn(meta.db_table)
    pk_column = qn(str(meta.pk.column))
    sets = [f"{qn(columns[n])} = excluded.{qn(columns[n])}" for n in update or ()]
    for name in add:
        column = qn(columns[name])
        added = f"{table}.{column} + excluded.{column}"
        if saturate_at is not None:
            added = (
                f"CASE WHEN {table}.{column} > {int(saturate_at)} - excluded.{column} "
                f"THEN {int(saturate_at)} ELSE {added} END"
            )
        sets.append(f"{column} = {added}")
    head = f"INSERT INTO {table} ({', '.join(qn(columns[n]) for n in names)}) VALUES "  # noqa: S608 - names are the model's, quoted
    target = f"ON CONFLICT ({', '.join(qn(columns[n]) for n in conflict)})"
    result: list[Upserted] = []
    with transaction.atomic(), connection.cursor() as cursor:
        for first in range(0, len(rows), batch_size):
            batch = rows[first : first + batch_size]
            batch_keys = keys[first : first + batch_size]
            if sets and connection.vendor == "postgresql":
                cursor.execute(
                    _values(head, len(batch), len(names))
                    + f" {target} DO UPDATE SET {', '.join(sets)}"
                    + f" RETURNING {pk_column}, (xmax = 0)",
                    _params(batch, names, fields),
                )
                inserted = {pk for pk, new in cursor.fetchall() if new}
            else:
                cursor.execute(
                    _values(head, len(batch), len(names))
                    + f" {target} DO NOTHING RETURNING {pk_column}",
                    _params(batch, names, fields),
                )
                inserted = {pk for (pk,) in cursor.fetchall()}
                if sets and len(inserted) < len(batch):
                    new_keys = set(_stored(model, conflict, pks=inserted))
                    rest = [
                        row
                        for row, key in zip(batch, batch_keys, strict=True)
                        if key not in new_keys
                    ]
                    cursor.execute(
                        _values(head, len(rest), len(names))
                        + f" {target} DO UPDATE SET {', '.join(sets)}",
                        _params(rest, names, fields),
                    )
            stored = _stored(model, conflict, keys=batch_keys)
            result.extend(Upserted(stored[key], stored[key] in inserted) for key in batch_keys)
    return result


def _key(row: Mapping[str, Any], conflict: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row[name] for name in conflict)


def _values(head: str, rows: int, columns: int) -> str:
    placeholders = "(" + ", ".join(["%s"] * columns) + ")"
    return head + ", ".join([placeholders] * rows)


def _params(batch: Sequence[Mapping[str, Any]], names: list[str], fields: list[Any]) -> list[Any]:
    return [
        field.get_db_prep_save(row[name], connection)
        for row in batch
        for name, field in zip(names, fields, strict=True)
    ]


def _stored(
    model: type[Model],
    conflict: Sequence[str],
    *,
    keys: Sequence[tuple[Any, ...]] = (),
    pks: set[Any] | None = None,
) -> dict[tuple[Any, ...], Any]:
    """Conflict values → primary key of stored rows, found by conflict values (``keys``) or by
    primary key (``pks``). Read through the ORM, so values compare as Python values whatever
    the database driver returns (SQLite gives datetimes as text)."""
    queryset = model._default_manager.all()
    if pks is not None:
        queryset = queryset.filter(pk__in=pks)
    else:
        queryset = queryset.filter(
            reduce(or_, (Q(**dict(zip(conflict, key, strict=True))) for key in keys))
        )
    return {tuple(values[1:]): values[0] for values in queryset.values_list("pk", *conflict)}
