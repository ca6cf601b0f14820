"""Flags and segments of an environment."""

from __future__ import annotations

from typing import Any

import structlog
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from apps.audit.concurrency import last_change, lock_current, version_check
from apps.audit.services import Actor, audit_record
from apps.core.authz import authorize
from apps.core.lookalike import lookalike_key
from apps.tenancy.models import Environment
from apps.tenancy.services import environment_revision_bump

from ..models import Flag, Segment
from ..selectors import flag_dependencies_by_name
from ..validation import Context, Problems, normalize_feature, normalize_segment
from ._common import lock_environment, reason_for

log = structlog.get_logger(__name__)

# Flag fields an operator may change (the name is fixed: SDKs look flags up by it).
_EDITABLE = {
    "description": "description",
    "type": "type",
    "enabled": "enabled",
    "impression_data": "impressionData",
    "stale": "stale",
    "strategies": "strategies",
    "variants": "variants",
    "dependencies": "dependencies",
}


def _strict_context(
    environment: Environment, *, flag_name: str, exclude_pk: int | None = None
) -> Context:
    return Context(
        strict=True,
        name_fixed=exclude_pk is not None,
        flag_name=flag_name,
        segment_ids=frozenset(
            Segment.objects.filter(environment=environment).values_list("segment_id", flat=True)
        ),
        flags=flag_dependencies_by_name(environment_id=environment.pk, exclude_pk=exclude_pk),
    )


def _validated(document: dict[str, Any], ctx: Context) -> dict[str, Any]:
    problems = Problems()
    feature = normalize_feature(document, "", problems, ctx)
    if problems:
        raise ValidationError(problems.worded())
    return feature


def _apply(flag: Flag, feature: dict[str, Any]) -> None:
    for field, key in _EDITABLE.items():
        setattr(flag, field, feature[key])


def _lock_flag(flag: Flag) -> Flag:
    """The flag, locked and re-read; ``DeletedMeanwhile`` if another operator deleted it."""
    return lock_current(
        Flag.objects.select_related("environment"),
        flag.pk,
        what=f"Flag {flag.name}",
        target_type="flags.flag",
    )


def _lock_segment(segment: Segment) -> Segment:
    """The segment, locked and re-read; ``DeletedMeanwhile`` if another operator deleted it."""
    return lock_current(
        Segment.objects.all(),
        segment.pk,
        what=f"Segment {segment.name}",
        target_type="flags.segment",
    )


def _check_segment_seen(segment: Segment, expected_version: int | None) -> None:
    """``_check_seen`` for a segment (locked)."""
    if expected_version is None or expected_version == segment.version:
        return
    changed_by, changed_at = last_change(target_type="flags.segment", target_id=segment.pk)
    version_check(
        what=f"Segment {segment.name}",
        expected=expected_version,
        current=segment.version,
        changed_by=changed_by,
        changed_at=changed_at or segment.updated_at,
    )


def _check_seen(flag: Flag, expected_version: int | None) -> None:
    """Refuse a change based on a version of ``flag`` (locked) that moved on, naming the
    author of its newest audited change."""
    if expected_version is None or expected_version == flag.version:
        return
    changed_by, changed_at = last_change(target_type="flags.flag", target_id=flag.pk)
    version_check(
        what=f"Flag {flag.name} in {flag.environment.name}",
        expected=expected_version,
        current=flag.version,
        changed_by=changed_by,
        changed_at=changed_at or flag.updated_at,
    )


@transaction.atomic
def flag_create(
    *,
    actor: Actor,
    environment: Environment,
    name: str,
    description: str = "",
    type: str = "release",
    enabled: bool = False,
    impression_data: bool = False,
    strategies: Any = None,
    variants: Any = None,
    dependencies: Any = None,
    reason: str = "",
) -> Flag:
    authorize(actor, "flags.add_flag", environment.tenant)
    environment = lock_environment(environment)
    reason = reason_for(environment, reason)
    document = {
        "name": name,
        "description": description,
        "type": type,
        "enabled": enabled,
        "impressionData": impression_data,
        "strategies": strategies or [],
        "variants": variants or [],
        "dependencies": dependencies or [],
    }
    feature = _validated(document, _strict_context(environment, flag_name=name))
    if Flag.objects.filter(environment=environment, name=feature["name"]).exists():
        raise ValidationError(
            {"name": [f"A flag named {name!r} already exists in {environment.name}."]}
        )
    key = lookalike_key(feature["name"])
    twin = next(
        (
            other
            for other in Flag.objects.filter(environment=environment).values_list("name", flat=True)
            if lookalike_key(other) == key
        ),
        None,
    )
    if twin is not None:  # the environment lock above keeps a concurrent twin out
        raise ValidationError(
            {
                "name": [
                    f"Looks like the existing flag {twin!r} in {environment.name}: "
                    "SDK users could not tell them apart."
                ]
            }
        )
    flag = Flag(environment=environment, name=feature["name"])
    _apply(flag, feature)
    flag.save()
    revision = environment_revision_bump(environment_id=environment.pk)
    audit_record(
        actor=actor,
        action="flag.created",
        target=flag,
        tenant=environment.tenant,
        reason=reason,
        after={**flag.snapshot(), "revision": revision},
    )
    log.info("flag.created", flag_id=flag.pk, environment_id=environment.pk, revision=revision)
    return flag


@transaction.atomic
def flag_update(
    *,
    actor: Actor,
    flag: Flag,
    reason: str = "",
    expected_version: int | None = None,
    **changes: Any,
) -> Flag:
    """Change any of ``description, type, enabled, impression_data, stale, strategies,
    variants, dependencies``; what is not given stays.

    ``expected_version``: the flag's ``version`` the change was based on (None: no check);
    ``StaleVersion`` when it moved on. A real change adds one to ``version``."""
    authorize(actor, "flags.change_flag", flag.environment.tenant)
    unknown = set(changes) - set(_EDITABLE)
    if unknown:
        raise ValidationError({key: ["This field cannot be changed."] for key in sorted(unknown)})
    environment = lock_environment(flag.environment)
    flag = _lock_flag(flag)
    _check_seen(flag, expected_version)
    reason = reason_for(environment, reason)
    before = flag.snapshot()
    document = {key: before[key] for key in _EDITABLE.values()} | {"name": flag.name}
    for field, value in changes.items():
        document[_EDITABLE[field]] = value
    feature = _validated(
        document, _strict_context(environment, flag_name=flag.name, exclude_pk=flag.pk)
    )
    _apply(flag, feature)
    # It passed the editor's checks: what an import reported about it no longer holds.
    cleared = bool(flag.import_warnings)
    flag.import_warnings = []
    if flag.snapshot() == before:
        if cleared:
            flag.save(update_fields=["import_warnings"])
        return flag
    # Every writer of a flag holds the environment lock (lock_environment), so this
    # read-modify-write of the version cannot interleave with another.
    flag.version += 1
    flag.save()
    revision = environment_revision_bump(environment_id=environment.pk)
    audit_record(
        actor=actor,
        action="flag.updated",
        target=flag,
        tenant=environment.tenant,
        reason=reason,
        before=before,
        after={**flag.snapshot(), "revision": revision},
    )
    log.info("flag.updated", flag_id=flag.pk, environment_id=environment.pk, revision=revision)
    return flag


@transaction.atomic
def flag_toggle(
    *,
    actor: Actor,
    flag: Flag,
    enabled: bool,
    reason: str = "",
    expected_version: int | None = None,
) -> Flag:
    """Turn a flag on or off. In production a reason is required (the UI confirms first).

    ``expected_version``: the flag's ``version`` the user saw (None: no check, and turning
    on a flag that is on stays a no-op); ``StaleVersion`` when it moved on, so two operators
    clicking "Turn on" and "Turn off" at once cannot both win."""
    authorize(actor, "flags.change_flag", flag.environment.tenant)
    environment = lock_environment(flag.environment)
    flag = _lock_flag(flag)
    _check_seen(flag, expected_version)
    reason = reason_for(environment, reason)
    if flag.enabled == enabled:
        return flag
    before = flag.snapshot()
    flag.enabled = enabled
    flag.version += 1  # under the environment lock, see flag_update
    flag.save(update_fields=["enabled", "version", "updated_at"])
    revision = environment_revision_bump(environment_id=environment.pk)
    audit_record(
        actor=actor,
        action="flag.enabled" if enabled else "flag.disabled",
        target=flag,
        tenant=environment.tenant,
        reason=reason,
        before=before,
        after={**flag.snapshot(), "revision": revision},
    )
    log.info(
        "flag.toggled",
        flag_id=flag.pk,
        enabled=enabled,
        environment_id=environment.pk,
        revision=revision,
    )
    return flag


@transaction.atomic
def flag_delete(
    *, actor: Actor, flag: Flag, reason: str = "", expected_version: int | None = None
) -> int:
    """Delete a flag: SDKs stop seeing it at once. Returns the new revision.

    ``expected_version``: the flag's ``version`` the user decided on (None: no check);
    ``StaleVersion`` when someone changed it since, so a delete confirmed on an old page
    cannot remove a flag another operator has just re-configured."""
    authorize(actor, "flags.delete_flag", flag.environment.tenant)
    environment = lock_environment(flag.environment)
    flag = _lock_flag(flag)
    _check_seen(flag, expected_version)
    reason = reason_for(environment, reason)
    children = [
        name
        for name, deps in flag_dependencies_by_name(environment_id=environment.pk).items()
        if any(d.get("feature") == flag.name for d in deps)
    ]
    if children:
        raise ValidationError(
            {
                "flag": [
                    f"{', '.join(sorted(children))} depend(s) on {flag.name}: "
                    "remove the dependency first."
                ]
            }
        )
    before = flag.snapshot()
    pk = flag.pk
    flag.delete()
    revision = environment_revision_bump(environment_id=environment.pk)
    audit_record(
        actor=actor,
        action="flag.deleted",
        target_type="flags.flag",
        target_id=str(pk),
        target_label=before["name"],
        tenant=environment.tenant,
        reason=reason,
        before=before,
        after={"revision": revision},
    )
    log.info("flag.deleted", flag_id=pk, environment_id=environment.pk, revision=revision)
    return revision


# --------------------------------------------------------------------------- segments


def _segment_validated(document: dict[str, Any]) -> dict[str, Any]:
    problems = Problems()
    segment = normalize_segment(document, "", problems, Context(strict=True))
    if problems:
        raise ValidationError(problems.worded())
    return segment


def _flags_using_segment(environment: Environment, segment_id: int) -> list[str]:
    return sorted(
        flag.name
        for flag in Flag.objects.filter(environment=environment).only("name", "strategies")
        if any(segment_id in (s.get("segments") or []) for s in flag.strategies)
    )


@transaction.atomic
def segment_create(
    *,
    actor: Actor,
    environment: Environment,
    name: str,
    constraints: Any,
    description: str = "",
    segment_id: int | None = None,
    reason: str = "",
) -> Segment:
    authorize(actor, "flags.add_segment", environment.tenant)
    environment = lock_environment(environment)
    reason = reason_for(environment, reason)
    existing = Segment.objects.filter(environment=environment)
    if segment_id is None:
        segment_id = (existing.aggregate(m=Max("segment_id"))["m"] or 0) + 1
    document = _segment_validated(
        {"id": segment_id, "name": name, "description": description, "constraints": constraints}
    )
    if not document["name"].strip():
        raise ValidationError({"name": ["Name the segment, e.g. beta-testers."]})
    if existing.filter(segment_id=segment_id).exists():
        raise ValidationError(
            {"segment_id": [f"Segment {segment_id} already exists in {environment.name}."]}
        )
    segment = Segment.objects.create(
        environment=environment,
        segment_id=segment_id,
        name=document["name"],
        description=document["description"],
        constraints=document["constraints"],
    )
    revision = environment_revision_bump(environment_id=environment.pk)
    audit_record(
        actor=actor,
        action="segment.created",
        target=segment,
        tenant=environment.tenant,
        reason=reason,
        after={**segment.snapshot(), "revision": revision},
    )
    return segment


@transaction.atomic
def segment_update(
    *,
    actor: Actor,
    segment: Segment,
    name: str | None = None,
    description: str | None = None,
    constraints: Any = None,
    reason: str = "",
    expected_version: int | None = None,
) -> Segment:
    """Change a segment's name, description or constraints; what is not given stays.

    ``expected_version``: the segment's ``version`` the change was based on (None: no
    check); ``StaleVersion`` when it moved on. A real change adds one to ``version``."""
    authorize(actor, "flags.change_segment", segment.environment.tenant)
    environment = lock_environment(segment.environment)
    segment = _lock_segment(segment)
    _check_segment_seen(segment, expected_version)
    reason = reason_for(environment, reason)
    before = segment.snapshot()
    document = _segment_validated(
        {
            "id": segment.segment_id,
            "name": segment.name if name is None else name,
            "description": segment.description if description is None else description,
            "constraints": segment.constraints if constraints is None else constraints,
        }
    )
    if not document["name"].strip():
        raise ValidationError({"name": ["Name the segment, e.g. beta-testers."]})
    segment.name, segment.description, segment.constraints = (
        document["name"],
        document["description"],
        document["constraints"],
    )
    if segment.snapshot() == before:
        return segment
    segment.version += 1  # under the environment lock, like a flag's
    segment.save()
    revision = environment_revision_bump(environment_id=environment.pk)
    audit_record(
        actor=actor,
        action="segment.updated",
        target=segment,
        tenant=environment.tenant,
        reason=reason,
        before=before,
        after={**segment.snapshot(), "revision": revision},
    )
    return segment


@transaction.atomic
def segment_delete(
    *, actor: Actor, segment: Segment, reason: str = "", expected_version: int | None = None
) -> int:
    """Delete a segment no flag uses. ``expected_version`` as for ``segment_update``."""
    authorize(actor, "flags.delete_segment", segment.environment.tenant)
    environment = lock_environment(segment.environment)
    segment = _lock_segment(segment)
    _check_segment_seen(segment, expected_version)
    reason = reason_for(environment, reason)
    users = _flags_using_segment(environment, segment.segment_id)
    if users:
        raise ValidationError(
            {"segment": [f"Used by {', '.join(users)}: remove it from their strategies first."]}
        )
    before = segment.snapshot()
    pk = segment.pk
    segment.delete()
    revision = environment_revision_bump(environment_id=environment.pk)
    audit_record(
        actor=actor,
        action="segment.deleted",
        target_type="flags.segment",
        target_id=str(pk),
        target_label=before["name"],
        tenant=environment.tenant,
        reason=reason,
        before=before,
        after={"revision": revision},
    )
    return revision
