"""Import from Unleash: a client-features payload (``GET /api/client/features`` of an
Unleash server, v1 or v2, with segments and dependencies), or a captured stream of delta
events, stored faithfully into one environment.

Two modes:

- ``merge`` (the default): imported flags and segments are created or replaced by name /
  segment id; everything else in the environment stays;
- ``replace``: afterwards the environment holds exactly the payload; flags and segments not
  in it are deleted.

Either way it is one transaction, one revision bump and one audit event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.authz import authorize
from apps.audit.services import Actor, audit_record
from apps.tenancy.models import Environment
from apps.tenancy.services import environment_revision_bump

from ..models import Flag, Segment
from ..unleash import KILL_PREFIX, apply_events
from ..validation import Context, Problems, normalize_feature, normalize_segment
from ._common import lock_environment, reason_for

log = structlog.get_logger(__name__)

IMPORT_MODES = ("merge", "replace")
MAX_FEATURES = 5000


@dataclass
class ImportResult:
    mode: str
    revision: int
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    segments_created: list[int] = field(default_factory=list)
    segments_updated: list[int] = field(default_factory=list)
    segments_deleted: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "revision": self.revision,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "segments_created": self.segments_created,
            "segments_updated": self.segments_updated,
            "segments_deleted": self.segments_deleted,
            "warnings": self.warnings,
        }


def _state_of(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValidationError(
            {"payload": ["Expected a JSON object: an Unleash client-features payload."]}
        )
    if "events" in payload and "features" not in payload:
        events = payload["events"]
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise ValidationError({"payload.events": ["Expected a list of delta events."]})
        try:
            return apply_events(events)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(
                {"payload.events": [f"Not a valid delta event stream: {exc}."]}
            ) from None
    if "features" not in payload:
        raise ValidationError(
            {"payload": ["Expected an Unleash client-features payload with a features list."]}
        )
    version = payload.get("version", 2)
    if version not in (1, 2):
        raise ValidationError(
            {"payload.version": [f"Unsupported version {version!r}; Unleash client API v1 or v2."]}
        )
    return payload


def _parse(
    state: dict[str, Any], *, existing_segment_ids: set[int], mode: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Problems]:
    problems = Problems()
    raw_segments = state.get("segments") or []
    if not isinstance(raw_segments, list):
        problems.error("payload.segments", "Must be a list.")
        raw_segments = []
    lenient = Context(strict=False)
    segments = [
        normalize_segment(s, f"payload.segments.{i}", problems, lenient)
        for i, s in enumerate(raw_segments)
    ]
    ids = [s.get("id") for s in segments]
    for i, segment_id in enumerate(ids):
        if segment_id and ids.index(segment_id) != i:
            problems.error(f"payload.segments.{i}.id", f"Segment {segment_id} appears twice.")
    known = {i for i in ids if i} | (existing_segment_ids if mode == "merge" else set())
    raw_features = state.get("features")
    if not isinstance(raw_features, list):
        problems.error("payload.features", "Must be a list.")
        raw_features = []
    if len(raw_features) > MAX_FEATURES:
        problems.error("payload.features", f"At most {MAX_FEATURES} features per import.")
        raw_features = []
    ctx = Context(strict=False, segment_ids=frozenset(known))
    features = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_features):
        feature = normalize_feature(raw, f"payload.features.{i}", problems, ctx)
        name = feature.get("name", "")
        if name in seen:
            problems.error(f"payload.features.{i}.name", f"{name!r} appears twice.")
        seen.add(name)
        features.append(feature)
    return features, segments, problems


def _flag_fields(feature: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": feature["description"],
        "type": feature["type"],
        "enabled": feature["enabled"],
        "impression_data": feature["impressionData"],
        "project": feature["project"],
        "stale": feature["stale"],
        "strategies": feature["strategies"],
        "variants": feature["variants"],
        "dependencies": feature["dependencies"],
    }


@transaction.atomic
def flags_import(
    *, actor: Actor, environment: Environment, payload: Any, mode: str = "merge", reason: str = ""
) -> ImportResult:
    authorize(actor, "flags.add_flag", environment.tenant)
    authorize(actor, "flags.change_flag", environment.tenant)
    if mode not in IMPORT_MODES:
        raise ValidationError(
            {"mode": ["Use merge (keep flags not in the payload) or replace (delete them)."]}
        )
    if mode == "replace":
        authorize(actor, "flags.delete_flag", environment.tenant)
    environment = lock_environment(environment)
    reason = reason_for(environment, reason)
    state = _state_of(payload)
    existing_segments = {s.segment_id: s for s in Segment.objects.filter(environment=environment)}
    features, segments, problems = _parse(
        state, existing_segment_ids=set(existing_segments), mode=mode
    )
    for i, feature in enumerate(features):
        if feature.get("name", "").startswith(KILL_PREFIX):
            problems.error(
                f"payload.features.{i}.name",
                f"Names starting with {KILL_PREFIX!r} belong to kill switches; "
                "engage a kill switch instead.",
            )
    if problems:
        raise ValidationError(problems.errors)

    result = ImportResult(mode=mode, revision=0, warnings=problems.warnings)
    for document in segments:
        current = existing_segments.get(document["id"])
        fields = {
            "name": document["name"],
            "description": document["description"],
            "constraints": document["constraints"],
        }
        if current is None:
            Segment.objects.create(environment=environment, segment_id=document["id"], **fields)
            result.segments_created.append(document["id"])
        elif any(getattr(current, k) != v for k, v in fields.items()):
            Segment.objects.filter(pk=current.pk).update(**fields)
            result.segments_updated.append(document["id"])
    existing_flags = {f.name: f for f in Flag.objects.filter(environment=environment)}
    for feature in features:
        fields = _flag_fields(feature)
        flag = existing_flags.get(feature["name"])
        if flag is None:
            Flag.objects.create(environment=environment, name=feature["name"], **fields)
            result.created.append(feature["name"])
        elif any(getattr(flag, k) != v for k, v in fields.items()):
            for key, value in fields.items():
                setattr(flag, key, value)
            flag.version += 1  # an edit based on the old version is now stale
            flag.save()
            result.updated.append(feature["name"])
        else:
            result.unchanged.append(feature["name"])
    if mode == "replace":
        keep = {f["name"] for f in features}
        doomed = [name for name in existing_flags if name not in keep]
        Flag.objects.filter(environment=environment, name__in=doomed).delete()
        result.deleted = sorted(doomed)
        keep_ids = {s["id"] for s in segments}
        gone = [i for i in existing_segments if i not in keep_ids]
        Segment.objects.filter(environment=environment, segment_id__in=gone).delete()
        result.segments_deleted = sorted(gone)

    changed = (
        result.created
        or result.updated
        or result.deleted
        or result.segments_created
        or result.segments_updated
        or result.segments_deleted
    )
    result.revision = (
        environment_revision_bump(environment_id=environment.pk)
        if changed
        else environment.revision
    )
    audit_record(
        actor=actor,
        action="flags.imported",
        target=environment,
        tenant=environment.tenant,
        reason=reason,
        after=result.summary(),
    )
    log.info(
        "flags.imported",
        environment_id=environment.pk,
        mode=mode,
        created=len(result.created),
        updated=len(result.updated),
        deleted=len(result.deleted),
        revision=result.revision,
    )
    return result
