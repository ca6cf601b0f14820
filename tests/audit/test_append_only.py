"""Audit events are never changed or deleted: refused by the ORM everywhere, and by the
database itself on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import DatabaseError, connection, connections, transaction

from apps.audit.models import AppendOnlyError, AuditEvent
from apps.audit.services import SystemActor, audit_chain_verify, audit_record

from .conftest import on_postgresql

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_audit_log")]

Record = Callable[..., AuditEvent]


def _rows() -> list[tuple]:
    return list(AuditEvent.objects.order_by("id").values_list("id", "action", "reason", "hash"))


def _save_changed(event: AuditEvent) -> None:
    event.reason = "rewritten"
    event.save()


ORM_CHANGES: dict[str, Callable[[AuditEvent], object]] = {
    "queryset_update": lambda e: AuditEvent.objects.filter(pk=e.pk).update(reason="rewritten"),
    "queryset_delete": lambda e: AuditEvent.objects.filter(pk=e.pk).delete(),
    "manager_all_delete": lambda e: AuditEvent.objects.all().delete(),
    "instance_delete": lambda e: e.delete(),
    "instance_save_existing": _save_changed,
    "instance_save_update_fields": lambda e: e.save(update_fields=["reason"]),
    "bulk_update": lambda e: AuditEvent.objects.bulk_update([e], ["reason"]),
}


@pytest.mark.parametrize("change", list(ORM_CHANGES))
def test_audit_event_orm__change_or_delete__refused_and_nothing_changes(
    record: Record, change: str
) -> None:
    event = record(reason="original")
    before = _rows()

    with pytest.raises(AppendOnlyError):
        ORM_CHANGES[change](AuditEvent.objects.get(pk=event.pk))

    assert _rows() == before
    assert audit_chain_verify().ok


RAW_CHANGES = {
    "update": "UPDATE audit_auditevent SET reason = 'rewritten'",
    "delete": "DELETE FROM audit_auditevent",
}


@on_postgresql
@pytest.mark.parametrize("statement", list(RAW_CHANGES))
def test_audit_event_database__raw_sql_change__refused_by_trigger(
    record: Record, statement: str
) -> None:
    record(reason="original")
    before = _rows()

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(RAW_CHANGES[statement])

    assert _rows() == before


@pytest.mark.skipif(
    connection.vendor == "postgresql", reason="SQLite has no such trigger; documents the gap"
)
def test_audit_event_database__sqlite__raw_sql_is_not_guarded_but_verify_catches_it(
    record: Record,
) -> None:
    event = record(reason="original")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET reason = 'rewritten' WHERE id = %s", [event.pk])
    assert audit_chain_verify().first_broken_id == event.pk


# --------------------------------------------------------------------------- concurrency


THREADS = 8


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_audit_record__parallel_appends__keep_one_linear_chain() -> None:
    """Without the chain lock, transactions racing for the same previous hash would fork it."""
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def append(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            with transaction.atomic():
                audit_record(
                    actor=SystemActor(f"system:thread-{i}"),
                    action="thing.parallel",
                    target_id=str(i),
                )
        except BaseException as exc:  # reported below, in the test thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=append, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == THREADS
    assert len({e.prev_hash for e in events}) == THREADS
    assert sorted(e.target_id for e in events) == sorted(str(i) for i in range(THREADS))
    assert audit_chain_verify().ok
