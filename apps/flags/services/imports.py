"""Import from Unleash: a client-features payload (``GET /api/client/features`` of an
Unleash server, v1 or v2, with segments and dependencies), or a captured stream of delta
events, stored faithfully into one environment.

Two modes:

- ``merge`` (the default): imported flags and segments are created or replaced by name /
  segment id; everything else in the environment stays;
- ``replace``: afterwards the environment holds exactly the payload; flags and segments not
  in it are deleted.

Either way it is one transaction and one revision bump. The audit trail gets one event per
flag and segment the import creates, changes or deletes, with its full definition before
and after (``flag.created`` / ``flag.updated`` / ``flag.deleted`` and the ``segment.*``
twins, as the editor writes them, marked ``"via": "import"``), and one ``flags.imported``
summary on the environment.

Every value check the editor runs also runs here; what fails one is stored anyway (SDKs
evaluate it as they would from Unleash) and reported as a warning naming the flag, the
strategy and the constraint. Each flag keeps its warnings (``Flag.import_warnings``) so its
page shows them until an edit fixes them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import structlog
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.audit.services import Actor, audit_record
from apps.core.authz import authorize
from apps.core.input_guards import is_digits
from apps.core.lookalike import lookalike_key
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
    names: set[str] = set()
    keys: dict[str, str] = {}  # look-alike key -> the first name with it
    for i, raw in enumerate(raw_features):
        feature = normalize_feature(raw, f"payload.features.{i}", problems, ctx)
        name = feature.get("name", "")
        first = keys.setdefault(lookalike_key(name), name)
        if name in names:
            problems.error(f"payload.features.{i}.name", f"{name!r} appears twice.")
        elif first != name:
            problems.error(
                f"payload.features.{i}.name",
                f"{name!r} looks like {first!r}, also in the payload: SDK users could not "
                "tell them apart.",
            )
        names.add(name)
        features.append(feature)
    return features, segments, problems


# payload.features.3.strategies.1.constraints.0.value -> (features, 3, [strategies, 1, …])
_LOCATED = re.compile(r"^payload\.(features|segments)\.(\d+)(?:\.(.+))?$")


def _at(container: Any, key: str) -> Any:
    if isinstance(container, list) and is_digits(key) and int(key) < len(container):
        return container[int(key)]
    if isinstance(container, dict):
        return container.get(key)
    return None


def _where(raw: Any, tokens: list[str]) -> str:
    """``strategies.1.constraints.0.value`` of a raw feature as people read it:
    ``strategy 2 (flexibleRollout), constraint 1 (userId REGEX), value``."""
    parts: list[str] = []
    node = raw
    i = 0
    while i < len(tokens):
        step = tokens[i]
        index = tokens[i + 1] if i + 1 < len(tokens) else None
        if step in ("strategies", "constraints", "variants", "overrides") and (
            index is not None and is_digits(index)
        ):
            item = _at(_at(node, step), index)
            item = item if isinstance(item, dict) else {}
            number = int(index) + 1
            if step == "strategies":
                parts.append(f"strategy {number} ({item.get('name', '?')})")
            elif step == "constraints":
                parts.append(
                    f"constraint {number} ({item.get('contextName', '?')} "
                    f"{item.get('operator', '?')})"
                )
            elif step == "variants":
                parts.append(f"variant {item.get('name', number)!r}")
            else:
                parts.append(f"override {number}")
            node = item
            i += 2
            continue
        if step == "parameters" and index is not None:
            parts.append(f"parameter {index}")
            i += 2
            continue
        parts.append(".".join(tokens[i:]))
        break
    return ", ".join(parts)


@dataclass(frozen=True)
class _Located:
    kind: str  # "features" or "segments"
    index: int
    path: str  # inside the feature or segment: strategies.0.constraints.1.value
    where: str  # strategy 1 (default), constraint 2 (userId REGEX), value
    message: str


def _locate(state: dict[str, Any], problems: Problems) -> list[_Located]:
    located = []
    for path, message in problems.located:
        match = _LOCATED.match(path)
        if not match:
            located.append(_Located("", -1, path, path, message))
            continue
        kind, index, rest = match.group(1), int(match.group(2)), match.group(3) or ""
        raw = _at(state.get(kind), str(index))
        located.append(
            _Located(kind, index, rest, _where(raw, rest.split(".")) if rest else "", message)
        )
    return located


def _warning_text(item: _Located, features: list[dict[str, Any]], segments: list[Any]) -> str:
    if item.kind == "features":
        name = features[item.index].get("name", "?")
        head = f"flag {name!r}"
    elif item.kind == "segments":
        segment = segments[item.index] if item.index < len(segments) else {}
        head = f"segment {segment.get('id', '?')} ({segment.get('name') or 'unnamed'})"
    else:
        return f"{item.where}: {item.message}"
    if not item.where:
        return f"{head}: {item.message}"
    # "must be …", "is required …" are said of the field the place ends with.
    sep = " " if item.message[:1].islower() else ": "
    return f"{head}, {item.where}{sep}{item.message}"


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
    if mode == "merge":
        # A name that looks like a flag the import keeps would sit beside it in the SDKs.
        kept = {
            lookalike_key(name): name
            for name in Flag.objects.filter(environment=environment).values_list("name", flat=True)
        }
        for i, feature in enumerate(features):
            name = feature.get("name", "")
            twin = kept.get(lookalike_key(name))
            if twin is not None and twin != name:
                problems.error(
                    f"payload.features.{i}.name",
                    f"{name!r} looks like the existing flag {twin!r}: SDK users could not "
                    "tell them apart.",
                )
    if problems:
        raise ValidationError(problems.worded())

    located = _locate(state, problems)
    result = ImportResult(
        mode=mode,
        revision=0,
        warnings=[_warning_text(item, features, segments) for item in located],
    )
    flag_warnings: dict[str, list[dict[str, str]]] = {}
    for item in located:
        if item.kind == "features":
            flag_warnings.setdefault(features[item.index]["name"], []).append(
                {"where": item.where, "path": item.path, "message": item.message}
            )

    # (action, target or None, target id, label, before, after) per change, written to the
    # audit trail once the revision the changes land in is known.
    changes: list[tuple[str, Any, str, str, dict[str, Any] | None, dict[str, Any]]] = []
    for document in segments:
        current = existing_segments.get(document["id"])
        fields = {
            "name": document["name"],
            "description": document["description"],
            "constraints": document["constraints"],
        }
        if current is None:
            created = Segment.objects.create(
                environment=environment, segment_id=document["id"], **fields
            )
            result.segments_created.append(document["id"])
            changes.append(("segment.created", created, "", "", None, created.snapshot()))
        elif any(getattr(current, k) != v for k, v in fields.items()):
            before = current.snapshot()
            for key, value in fields.items():
                setattr(current, key, value)
            current.version += 1  # an import is a change like an edit (optimistic concurrency)
            current.save(update_fields=[*fields, "version", "updated_at"])
            result.segments_updated.append(document["id"])
            changes.append(("segment.updated", current, "", "", before, current.snapshot()))
    existing_flags = {f.name: f for f in Flag.objects.filter(environment=environment)}
    for feature in features:
        fields = _flag_fields(feature)
        warnings = flag_warnings.get(feature["name"], [])
        flag = existing_flags.get(feature["name"])
        if flag is None:
            flag = Flag.objects.create(
                environment=environment, name=feature["name"], import_warnings=warnings, **fields
            )
            result.created.append(feature["name"])
            changes.append(("flag.created", flag, "", "", None, flag.snapshot()))
        elif any(getattr(flag, k) != v for k, v in fields.items()):
            before = flag.snapshot()
            for key, value in fields.items():
                setattr(flag, key, value)
            flag.import_warnings = warnings
            flag.version += 1  # an edit based on the old version is now stale
            flag.save()
            result.updated.append(feature["name"])
            changes.append(("flag.updated", flag, "", "", before, flag.snapshot()))
        else:
            if flag.import_warnings != warnings:  # what is reported about it, not what it is
                Flag.objects.filter(pk=flag.pk).update(import_warnings=warnings)
            result.unchanged.append(feature["name"])
    if mode == "replace":
        keep = {f["name"] for f in features}
        doomed = sorted(name for name in existing_flags if name not in keep)
        for name in doomed:
            flag = existing_flags[name]
            changes.append(("flag.deleted", None, str(flag.pk), name, flag.snapshot(), {}))
        Flag.objects.filter(environment=environment, name__in=doomed).delete()
        result.deleted = doomed
        keep_ids = {s["id"] for s in segments}
        gone = sorted(i for i in existing_segments if i not in keep_ids)
        for segment_id in gone:
            segment = existing_segments[segment_id]
            changes.append(
                (
                    "segment.deleted",
                    None,
                    str(segment.pk),
                    str(segment),
                    segment.snapshot(),
                    {},
                )
            )
        Segment.objects.filter(environment=environment, segment_id__in=gone).delete()
        result.segments_deleted = gone

    result.revision = (
        environment_revision_bump(environment_id=environment.pk)
        if changes
        else environment.revision
    )
    for action, target, target_id, label, was, now in changes:
        kind = "flags.segment" if action.startswith("segment.") else "flags.flag"
        warnings = (
            flag_warnings.get(now.get("name", ""), [])
            if action in ("flag.created", "flag.updated")
            else []
        )
        audit_record(
            actor=actor,
            action=action,
            target=target,
            target_type="" if target is not None else kind,
            target_id=target_id,
            target_label=label,
            tenant=environment.tenant,
            reason=reason,
            before=was,
            after={
                **now,
                "revision": result.revision,
                "via": "import",
                **({"import_warnings": warnings} if warnings else {}),
            },
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
        warnings=len(result.warnings),
        revision=result.revision,
    )
    return result
