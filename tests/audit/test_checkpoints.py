"""Signed checkpoints of the chain head: the three rewrites the hash chain alone lets through
(edit and recompute, delete the newest events, empty the table) are caught by a checkpoint
copy kept outside the database; TRUNCATE is refused by PostgreSQL itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.test import Client, override_settings

from apps.audit import tasks
from apps.audit.checkpoints import FORMAT, signed_bytes
from apps.audit.hashing import GENESIS_HASH, chain_hash
from apps.audit.management.commands import audit as audit_command
from apps.audit.models import AppendOnlyError, AuditCheckpoint, AuditEvent
from apps.audit.selectors import checkpoint_record
from apps.audit.services import audit_chain_verify, audit_checkpoint_create
from apps.bundles import signing
from controlplane.celery import app as celery_app

from .conftest import on_postgresql, tamper

pytestmark = pytest.mark.django_db

Record = Callable[..., AuditEvent]


@pytest.fixture(autouse=True)
def _published_key() -> None:
    # The configured key activated up front (as migrate does; one audit event at most), so
    # each test's chain holds the events the test writes and that one.
    with transaction.atomic():
        signing.publish_active_key()


def _events(record: Record, count: int) -> list[AuditEvent]:
    return [record(action=f"thing.step{i}", target_id=str(i)) for i in range(count)]


def _command(*args: str) -> str:
    out = StringIO()
    call_command("audit", *args, stdout=out)
    return out.getvalue()


def _export(path: Path) -> str:
    return _command("export-checkpoints", "--output", str(path))


def _verify_with(path: Path) -> str:
    return _command("verify", "--checkpoints", str(path))


def _recompute_from(event_id: int) -> None:
    """What an attacker with database access does after editing an event: rewrite every hash
    from there on so the chain links up again."""
    events = list(AuditEvent.objects.order_by("id"))
    prev = GENESIS_HASH
    for event in events:
        if event.pk >= event_id:
            new_hash = chain_hash(event.hashed_content(), prev)
            tamper(
                "UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
                [prev, new_hash, event.pk],
            )
            prev = new_hash
        else:
            prev = event.hash


def _erase_checkpoints_in_database() -> None:
    tamper("DELETE FROM audit_auditcheckpoint", [])


# --------------------------------------------------------------------------- creating them


def test_audit_checkpoint_create__signs_the_chain_head_with_the_published_key(
    record: Record,
) -> None:
    events = _events(record, 3)

    checkpoint = audit_checkpoint_create()

    assert checkpoint is not None
    assert (checkpoint.event_id, checkpoint.event_count, checkpoint.head_hash) == (
        events[-1].pk,
        4,  # the key's activation and the three events
        events[-1].hash,
    )
    exported = checkpoint_record(checkpoint)
    assert exported["format"] == FORMAT
    assert exported["kid"] == signing.active_key_id()
    assert signing.verify(
        signed_bytes(exported), kid=exported["kid"], signature=exported["signature"]
    )
    forged = {**exported, "event_count": 2}
    assert not signing.verify(
        signed_bytes(forged), kid=forged["kid"], signature=forged["signature"]
    )


def test_audit_checkpoint_create__head_unchanged__returns_the_existing_one(record: Record) -> None:
    _events(record, 2)
    first = audit_checkpoint_create()
    assert audit_checkpoint_create() == first
    record(action="thing.later")
    second = audit_checkpoint_create()
    assert second is not None and first is not None
    assert (second.event_count, AuditCheckpoint.objects.count()) == (4, 2)
    assert second.event_id > first.event_id


@pytest.mark.django_db(transaction=True)  # TRUNCATE waits for no deferred FK checks
@on_postgresql
def test_audit_checkpoint_create__empty_chain__none() -> None:
    tamper("TRUNCATE audit_auditevent", [])
    assert audit_checkpoint_create() is None
    assert AuditCheckpoint.objects.count() == 0


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_audit_checkpoint_create__concurrent_with_appends__one_per_head_and_all_hold(
    record: Record,
) -> None:
    _events(record, 1)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            if i % 2:
                audit_checkpoint_create()
            else:
                record(action=f"thing.concurrent{i}")
                audit_checkpoint_create()
        except BaseException as exc:  # reported below, with the thread's traceback
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    heads = list(AuditCheckpoint.objects.values_list("event_id", flat=True))
    assert len(heads) == len(set(heads))
    assert AuditCheckpoint.objects.order_by("-event_id").first().event_id == (  # type: ignore[union-attr]
        AuditEvent.objects.order_by("-id").first().pk  # type: ignore[union-attr]
    )
    report = audit_chain_verify()
    assert report.ok and report.checkpoints == len(heads)


def test_audit_checkpoint__orm_change_or_delete__refused(record: Record) -> None:
    _events(record, 1)
    checkpoint = audit_checkpoint_create()
    assert checkpoint is not None
    with pytest.raises(AppendOnlyError):
        AuditCheckpoint.objects.filter(pk=checkpoint.pk).update(event_count=0)
    with pytest.raises(AppendOnlyError):
        AuditCheckpoint.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        checkpoint.delete()


def test_audit_checkpoint_task__in_the_beat_schedule_and_registered() -> None:
    celery_app.finalize()
    entry = celery_app.conf.beat_schedule["audit.checkpoint"]
    assert entry["task"] in celery_app.tasks
    assert entry["schedule"] == float(settings.AUDIT_CHECKPOINT_INTERVAL_S)


def test_audit_checkpoint_command__prints_the_head(record: Record) -> None:
    events = _events(record, 2)
    assert f"Checkpoint of event #{events[-1].pk} (3 events" in _command("checkpoint")
    assert AuditCheckpoint.objects.count() == 1


# --------------------------------------------------------------------------- exporting them


def test_export_checkpoints__file__appends_only_newer_and_never_rewrites(
    record: Record, tmp_path: Path
) -> None:
    path = tmp_path / "kept-elsewhere" / "checkpoints.jsonl"
    _events(record, 2)
    audit_checkpoint_create()
    assert "1 new checkpoint(s)" in _export(path)
    first_line = path.read_text()

    assert "0 new checkpoint(s)" in _export(path)
    record(action="thing.later")
    audit_checkpoint_create()
    assert "1 new checkpoint(s)" in _export(path)

    lines = path.read_text().splitlines()
    assert path.read_text().startswith(first_line)
    assert [json.loads(line)["event_count"] for line in lines] == [3, 4]


def test_export_checkpoints__neither_or_both_targets__refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="exactly one"):
        _command("export-checkpoints")
    with pytest.raises(CommandError, match="exactly one"):
        _command(
            "export-checkpoints", "--output", str(tmp_path / "f"), "--webhook", "http://x.invalid"
        )


class _Sink:
    """A real HTTP server on loopback that stores what it is sent (no mocks)."""

    def __init__(self, status: int) -> None:
        self.bodies: list[Any] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                sink.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/checkpoints"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def sink_factory() -> Iterator[Callable[[int], _Sink]]:
    sinks: list[_Sink] = []

    def make(status: int) -> _Sink:
        sinks.append(_Sink(status))
        return sinks[-1]

    yield make
    for sink in sinks:
        sink.server.shutdown()
        sink.server.server_close()


def test_export_checkpoints__webhook__posts_every_checkpoint(
    record: Record, sink_factory: Callable[[int], _Sink]
) -> None:
    sink = sink_factory(204)
    _events(record, 1)
    first = audit_checkpoint_create()
    record(action="thing.later")
    audit_checkpoint_create()

    assert "2 checkpoint(s) sent" in _command("export-checkpoints", "--webhook", sink.url)
    assert first is not None
    _command("export-checkpoints", "--webhook", sink.url, "--after-event", str(first.event_id))

    assert [len(body["checkpoints"]) for body in sink.bodies] == [2, 1]
    assert sink.bodies[0]["checkpoints"][0] == checkpoint_record(first)


def test_export_checkpoints__webhook__many_checkpoints_in_batches(
    record: Record, sink_factory: Callable[[int], _Sink], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_command, "WEBHOOK_BATCH", 2)
    sink = sink_factory(200)
    for i in range(5):
        record(action=f"thing.step{i}")
        audit_checkpoint_create()

    assert "5 checkpoint(s) sent" in _command("export-checkpoints", "--webhook", sink.url)
    assert [len(body["checkpoints"]) for body in sink.bodies] == [2, 2, 1]


@pytest.mark.parametrize("status", [302, 404, 500])
def test_export_checkpoints__webhook_answers_non_2xx__command_fails(
    record: Record, sink_factory: Callable[[int], _Sink], status: int
) -> None:
    sink = sink_factory(status)
    _events(record, 1)
    audit_checkpoint_create()
    with pytest.raises(CommandError, match=f"answered {status}"):
        _command("export-checkpoints", "--webhook", sink.url)


def test_audit_checkpoint_task__webhook_configured__sends_the_new_checkpoint(
    record: Record, sink_factory: Callable[[int], _Sink]
) -> None:
    sink = sink_factory(200)
    events = _events(record, 2)
    with override_settings(AUDIT_CHECKPOINT_WEBHOOK_URL=sink.url):
        tasks.audit_checkpoint.apply().get()
    assert [c["event_id"] for c in sink.bodies[0]["checkpoints"]] == [events[-1].pk]


# --------------------------------------------------------------------------- verifying


def test_verify__intact_chain_and_checkpoint_file__ok(record: Record, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    _events(record, 2)
    audit_checkpoint_create()
    record(action="thing.later")
    audit_checkpoint_create()
    record(action="thing.after_the_last_checkpoint")
    _export(path)

    assert _verify_with(path).startswith(
        "OK: 5 audit events, hash chain intact, 2 signed checkpoint(s) hold"
    )


@on_postgresql
@pytest.mark.parametrize("edited", [0, 2, 4])
def test_verify__event_edited_and_hashes_recomputed__caught_by_the_checkpoint_file(
    record: Record, tmp_path: Path, edited: int
) -> None:
    path = tmp_path / "checkpoints.jsonl"
    events = _events(record, 5)
    audit_checkpoint_create()
    _export(path)

    tamper(
        "UPDATE audit_auditevent SET reason = %s WHERE id = %s",
        ["nothing happened", events[edited].pk],
    )
    _recompute_from(events[edited].pk)
    _erase_checkpoints_in_database()

    assert audit_chain_verify().ok  # the chain alone is fooled
    with pytest.raises(
        CommandError,
        match=rf"BROKEN at audit event #{events[-1].pk}: the chain up to this event differs",
    ):
        _verify_with(path)


@on_postgresql
def test_verify__rewrite_with_checkpoints_left_in_the_database__caught_without_a_file(
    record: Record,
) -> None:
    events = _events(record, 3)
    audit_checkpoint_create()
    tamper("UPDATE audit_auditevent SET reason = 'x' WHERE id = %s", [events[0].pk])
    _recompute_from(events[0].pk)

    report = audit_chain_verify()
    assert (report.ok, report.first_broken_id) == (False, events[-1].pk)


@on_postgresql
@pytest.mark.parametrize("deleted", [1, 2, 5])
def test_verify__newest_events_deleted__caught_by_the_checkpoint_file(
    record: Record, tmp_path: Path, deleted: int
) -> None:
    path = tmp_path / "checkpoints.jsonl"
    events = _events(record, 6)
    audit_checkpoint_create()
    _export(path)

    tamper("DELETE FROM audit_auditevent WHERE id >= %s", [events[len(events) - deleted].pk])
    _erase_checkpoints_in_database()

    assert audit_chain_verify().ok  # the chain alone is fooled
    with pytest.raises(CommandError, match="the newest events were deleted or the table emptied"):
        _verify_with(path)


@on_postgresql
def test_verify__events_deleted_and_new_ones_appended__caught_by_the_checkpoint_file(
    record: Record, tmp_path: Path
) -> None:
    # Cutting the chain short and writing new events after it leaves a longer, linked chain
    # whose event ids skip the checkpointed head.
    path = tmp_path / "checkpoints.jsonl"
    events = _events(record, 4)
    audit_checkpoint_create()
    _export(path)
    tamper("DELETE FROM audit_auditevent WHERE id >= %s", [events[2].pk])
    _erase_checkpoints_in_database()
    _events(record, 3)

    with pytest.raises(CommandError, match=rf"event #{events[-1].pk} is missing"):
        _verify_with(path)


@pytest.mark.django_db(transaction=True)  # TRUNCATE waits for no deferred FK checks
@on_postgresql
@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE audit_auditevent",
        "TRUNCATE audit_auditcheckpoint",
        "TRUNCATE audit_auditevent, audit_auditcheckpoint RESTART IDENTITY CASCADE",
        "TRUNCATE tenancy_tenant CASCADE",  # reaches the audit table through its foreign key
    ],
)
def test_truncate__audit_tables__refused_by_postgresql(record: Record, statement: str) -> None:
    _events(record, 2)
    audit_checkpoint_create()
    before = (AuditEvent.objects.count(), AuditCheckpoint.objects.count())

    with (
        pytest.raises(DatabaseError, match="cannot be truncated"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        # The test database lifts the refusal for its own flushes; production does not.
        cursor.execute("SET LOCAL controlplane.allow_audit_truncate = off")
        cursor.execute(statement)

    assert (AuditEvent.objects.count(), AuditCheckpoint.objects.count()) == before


@pytest.mark.django_db(transaction=True)  # TRUNCATE waits for no deferred FK checks
@on_postgresql
def test_verify__table_emptied_behind_the_trigger__caught_by_the_checkpoint_file(
    record: Record, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints.jsonl"
    _events(record, 3)
    audit_checkpoint_create()
    _export(path)

    # Replica mode skips the trigger, as an owner who disables it would.
    tamper("TRUNCATE audit_auditevent, audit_auditcheckpoint", [])

    assert audit_chain_verify().ok  # an empty chain is a valid chain
    with pytest.raises(CommandError, match="the chain ends after 0 events"):
        _verify_with(path)


@pytest.mark.parametrize(
    "forge",
    [
        {"head_hash": "f" * 64},
        {"event_count": 99},
        {"created_at": "2020-01-01T00:00:00+00:00"},
        {"signature": "AAAA"},
        {"kid": "0000000000000000"},
    ],
)
def test_verify__forged_checkpoint_in_the_file__refused(
    record: Record, tmp_path: Path, forge: dict[str, Any]
) -> None:
    path = tmp_path / "checkpoints.jsonl"
    _events(record, 2)
    checkpoint = audit_checkpoint_create()
    assert checkpoint is not None
    path.write_text(json.dumps({**checkpoint_record(checkpoint), **forge}) + "\n")

    with pytest.raises(CommandError, match="does not carry a valid signature"):
        _verify_with(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "line 1: not JSON"),
        ("[]\n", "line 1: a checkpoint must be a JSON object"),
        ('{"format": "other"}\n', "format must be"),
        (json.dumps({"format": FORMAT, "event_id": "7"}) + "\n", "event_id must be a positive"),
        (
            json.dumps({"format": FORMAT, "event_id": 1, "event_count": 1, "created_at": ""})
            + "\n",
            "created_at must be a non-empty string",
        ),
    ],
)
def test_verify__unreadable_checkpoint_file__names_the_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "checkpoints.jsonl"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        _verify_with(path)


def test_verify__missing_checkpoint_file__refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="No checkpoint file"):
        _verify_with(tmp_path / "nope.jsonl")


# --------------------------------------------------------------------------- the API


def test_checkpoints_api__admin__lists_oldest_first_with_after_event(
    api: Any, admin: Any, record: Record
) -> None:
    _events(record, 1)
    first = audit_checkpoint_create()
    record(action="thing.later")
    second = audit_checkpoint_create()
    assert first is not None and second is not None
    api.force_authenticate(admin)

    body = api.get("/api/v1/audit/checkpoints/").json()
    later = api.get(f"/api/v1/audit/checkpoints/?after_event={first.event_id}").json()

    assert body["results"] == [checkpoint_record(first), checkpoint_record(second)]
    assert later["results"] == [checkpoint_record(second)]


@pytest.mark.parametrize("value", ["x", "-1", "1.5", "9" * 30, "%00"])
def test_checkpoints_api__bad_after_event__400(api: Any, admin: Any, value: str) -> None:
    api.force_authenticate(admin)
    response = api.get(f"/api/v1/audit/checkpoints/?after_event={value}")
    assert response.status_code == 400
    assert "after_event" in response.json()["errors"]


def test_checkpoints_api__not_an_admin__refused(
    api: Any, operator: Any, viewer: Any, record: Record
) -> None:
    _events(record, 1)
    audit_checkpoint_create()
    assert api.get("/api/v1/audit/checkpoints/").status_code in (401, 403)
    for user in (operator, viewer):
        api.force_authenticate(user)
        assert api.get("/api/v1/audit/checkpoints/").status_code == 403


def test_audit_page__admin_sees_the_last_checkpoint_others_do_not(
    admin: Any, operator: Any, record: Record
) -> None:
    _events(record, 2)
    checkpoint = audit_checkpoint_create()
    assert checkpoint is not None
    pages = {}
    for user in (admin, operator):
        client = Client()
        client.force_login(user)
        pages[user.username] = client.get("/audit/").content.decode()

    assert (
        f"Last signed checkpoint: event #{checkpoint.event_id} (3 events)" in pages[admin.username]
    )
    assert "Last signed checkpoint" not in pages[operator.username]
