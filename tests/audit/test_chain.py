"""The hash chain and `./manage.py audit verify`."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from apps.audit.hashing import GENESIS_HASH, chain_hash
from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor, audit_chain_verify, audit_record
from apps.tenancy import services as tenancy

from .conftest import tamper

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_audit_log")]

Record = Callable[..., AuditEvent]


def _three_events(record: Record) -> list[AuditEvent]:
    return [record(action=f"thing.step{i}", target_id=str(i), after={"step": i}) for i in range(3)]


def _verify() -> str:
    out = StringIO()
    call_command("audit", "verify", stdout=out)
    return out.getvalue()


# --------------------------------------------------------------------------- the chain


def test_audit_record__first_event__links_to_genesis(record: Record) -> None:
    event = record()
    assert event.prev_hash == GENESIS_HASH
    assert event.hash == chain_hash(event.hashed_content(), GENESIS_HASH)


def test_audit_record__each_event__links_to_the_previous_hash(record: Record) -> None:
    events = _three_events(record)
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert len({e.hash for e in events}) == 3


@pytest.mark.django_db(transaction=True)
def test_audit_record__outside_a_transaction__refused() -> None:
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit_record(actor=SystemActor("system:test"), action="thing.changed")
    assert AuditEvent.objects.count() == before


def test_audit_record__rolled_back_change__leaves_no_event(record: Record) -> None:
    record()
    before = AuditEvent.objects.count()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        audit_record(actor=SystemActor("system:test"), action="thing.doomed")
        1 / 0  # noqa: B018 - the change fails after its event was written
    assert AuditEvent.objects.count() == before
    assert audit_chain_verify().ok


def test_audit_chain_verify__fresh_chain_from_real_services__ok() -> None:
    tenant = tenancy.tenant_create(actor=SystemActor("system:test"), slug="acme", name="Acme")
    tenancy.agent_create(actor=SystemActor("system:test"), tenant=tenant, slug="bot", name="Bot")
    report = audit_chain_verify()
    assert report.ok
    assert report.checked == AuditEvent.objects.count() == 5  # tenant, 3 environments, agent
    assert report.first_broken_id is None


def test_audit_chain_verify__no_events__ok() -> None:
    report = audit_chain_verify()
    assert (report.ok, report.checked) == (True, 0)


def test_audit_chain_verify__survives_reload_of_json_and_times(record: Record) -> None:
    record(
        before={"b": [1, 2.5, None, "é"], "a": {"z": True, "y": "x"}},
        after={"n": 10**12},
        reason="unicode ✓",
        target_label="ü" * 300,
    )
    assert audit_chain_verify().ok


# --------------------------------------------------------------------------- audit verify


def test_audit_verify_command__intact_chain__says_ok(record: Record) -> None:
    _three_events(record)
    output = _verify()
    assert output.startswith("OK: 3 audit events, hash chain intact")


def test_audit_verify_command__tampered_content__names_the_first_broken_event(
    record: Record,
) -> None:
    events = _three_events(record)
    tamper(
        "UPDATE audit_auditevent SET reason = %s WHERE id = %s", ["nothing to see", events[1].pk]
    )

    with pytest.raises(
        CommandError, match=rf"BROKEN at audit event #{events[1].pk}: content does not match"
    ):
        _verify()


def test_audit_verify_command__two_tampered__names_the_earlier_one(record: Record) -> None:
    events = _three_events(record)
    tamper(
        "UPDATE audit_auditevent SET after = %s WHERE id IN (%s, %s)",
        ['{"step": 99}', events[1].pk, events[2].pk],
    )

    with pytest.raises(CommandError, match=rf"#{events[1].pk}:"):
        _verify()


def test_audit_verify_command__rehashed_event__breaks_the_next_link(record: Record) -> None:
    """An attacker who recomputes the tampered event's own hash still breaks the chain."""
    events = _three_events(record)
    forged = AuditEvent.objects.get(pk=events[1].pk)
    forged.reason = "forged"
    forged_hash = chain_hash(forged.hashed_content(), forged.prev_hash)
    tamper(
        "UPDATE audit_auditevent SET reason = %s, hash = %s WHERE id = %s",
        ["forged", forged_hash, events[1].pk],
    )

    with pytest.raises(
        CommandError, match=rf"BROKEN at audit event #{events[2].pk}: link to the previous event"
    ):
        _verify()


def test_audit_verify_command__deleted_event__names_the_one_after_the_gap(record: Record) -> None:
    events = _three_events(record)
    tamper("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])

    with pytest.raises(CommandError, match=rf"BROKEN at audit event #{events[2].pk}: link"):
        _verify()


def test_audit_verify_command__tampered_then_chain_grows__still_names_the_tampered_event(
    record: Record,
) -> None:
    events = _three_events(record)
    tamper(
        "UPDATE audit_auditevent SET actor_label = %s WHERE id = %s", ["someone-else", events[0].pk]
    )
    record(action="thing.later")

    with pytest.raises(CommandError, match=rf"#{events[0].pk}:"):
        _verify()


def test_audit_chain_verify__tampered_last_event__counts_the_intact_ones_before_it(
    record: Record,
) -> None:
    events = _three_events(record)
    tamper("UPDATE audit_auditevent SET reason = %s WHERE id = %s", ["x", events[2].pk])
    report = audit_chain_verify()
    assert (report.ok, report.checked, report.first_broken_id) == (False, 2, events[2].pk)
