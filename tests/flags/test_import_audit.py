"""Issue 8 kind 8: every flag and segment an import creates, changes or deletes has its
definition before and after in the audit trail, one event per flag and segment, beside the
``flags.imported`` summary; ``--mode replace`` deletions keep the deleted definitions."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_verify
from apps.flags import services
from apps.flags.models import Flag, Segment
from apps.tenancy.models import Environment

from .conftest import SYSTEM, make_flag

pytestmark = pytest.mark.django_db


def _variant_flag(name: str, payload: str) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": True,
        "strategies": [{"name": "default", "constraints": []}],
        "variants": [
            {
                "name": "blue",
                "weight": 1000,
                "weightType": "variable",
                "stickiness": "default",
                "payload": {"type": "string", "value": payload},
            }
        ],
    }


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_import_merge__only_a_payload_changes__flag_updated_event_with_before_and_after(
    development: Environment,
) -> None:
    services.flags_import(
        actor=SYSTEM,
        environment=development,
        payload={"version": 2, "features": [_variant_flag("a", "old"), _variant_flag("b", "x")]},
    )

    result = services.flags_import(
        actor=SYSTEM,
        environment=development,
        payload={"version": 2, "features": [_variant_flag("a", "new"), _variant_flag("b", "x")]},
        reason="payload fix",
    )

    assert result.updated == ["a"] and result.unchanged == ["b"]
    created = _events("flag.created")
    (updated,) = _events("flag.updated")
    assert [e.target_label for e in created] == ["a", "b"]
    assert all(e.before is None and e.after["via"] == "import" for e in created)
    assert updated.target_label == "a" and updated.reason == "payload fix"
    assert updated.before["variants"][0]["payload"]["value"] == "old"
    assert updated.after["variants"][0]["payload"]["value"] == "new"
    assert updated.after["revision"] == result.revision
    assert len(_events("flags.imported")) == 2
    assert audit_chain_verify().ok


def test_import_replace__deletes_flags_and_segments__definitions_kept_in_the_audit(
    development: Environment,
) -> None:
    doomed = [
        make_flag(
            development,
            f"old-{i}",
            strategies=[
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": str(10 * i), "stickiness": "default"},
                }
            ],
        )
        for i in range(4)
    ]
    definitions = {f.name: f.snapshot() for f in doomed}
    services.segment_create(
        actor=SYSTEM,
        environment=development,
        name="beta",
        segment_id=7,
        constraints=[{"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@a.io"]}],
    )

    result = services.flags_import(
        actor=SYSTEM,
        environment=development,
        payload={"version": 2, "features": [_variant_flag("keep", "k")], "segments": []},
        mode="replace",
        reason="migration",
    )

    assert result.deleted == sorted(definitions) and result.segments_deleted == [7]
    deleted = {e.target_label: e for e in _events("flag.deleted")}
    assert set(deleted) == set(definitions)
    for name, definition in definitions.items():
        assert deleted[name].before == definition
        assert deleted[name].after == {"revision": result.revision, "via": "import"}
        assert deleted[name].target_type == "flags.flag"
    (segment_event,) = _events("segment.deleted")
    assert segment_event.before["constraints"][0]["values"] == ["@a.io"]
    assert segment_event.before["id"] == 7
    assert not Flag.objects.filter(name__startswith="old-").exists()
    assert not Segment.objects.exists()


def test_import__segments_created_and_changed__each_audited_with_before_and_after(
    development: Environment,
) -> None:
    def payload(values: list[str]) -> dict[str, Any]:
        return {
            "version": 2,
            "features": [],
            "segments": [
                {
                    "id": 3,
                    "name": "staff",
                    "constraints": [
                        {"contextName": "email", "operator": "STR_ENDS_WITH", "values": values}
                    ],
                }
            ],
        }

    services.flags_import(actor=SYSTEM, environment=development, payload=payload(["@a.io"]))
    services.flags_import(actor=SYSTEM, environment=development, payload=payload(["@b.io"]))

    (created,) = _events("segment.created")
    (updated,) = _events("segment.updated")
    assert created.after["constraints"][0]["values"] == ["@a.io"]
    assert updated.before["constraints"][0]["values"] == ["@a.io"]
    assert updated.after["constraints"][0]["values"] == ["@b.io"]


def test_import__nothing_changes__no_per_flag_events(development: Environment) -> None:
    payload = {"version": 2, "features": [_variant_flag("a", "x")]}
    services.flags_import(actor=SYSTEM, environment=development, payload=payload)
    before = AuditEvent.objects.exclude(action="flags.imported").count()

    services.flags_import(actor=SYSTEM, environment=development, payload=payload)

    assert AuditEvent.objects.exclude(action="flags.imported").count() == before
