"""What Unleash SDKs report: their registration and their evaluation counts.

These are facts from runtimes, not operator changes: they are recorded without an audit
event and without a revision bump. Counts are added with one ``INSERT … ON CONFLICT DO
UPDATE SET n = n + excluded.n`` per table (PostgreSQL, and SQLite ≥ 3.24), so concurrent
reports never lose an increment. Only flags the token's SDK is served are counted (a
made-up name costs no row), and a total saturates at the column's maximum instead of
overflowing it, so no report can make the next ones of that app fail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_lock
from apps.core.upsert import upsert

from ..models import FlagUsage, FlagVariantUsage, SdkInstance
from ..selectors import flag_names_known

log = structlog.get_logger(__name__)


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class SdkRegistrationRateExceeded(Exception):
    """A runtime token registered too many new SDK instances (app name + instance id) in the
    last minute (``RUNTIME_NEW_INSTANCES_PER_MINUTE``, shared with runtime heartbeats)."""

    def __init__(self, *, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        super().__init__(
            f"This token registered {limit} new SDK instances in the last minute; "
            f"retry in {retry_after_s} s or reuse an instance id."
        )


def _new_instance_allowed(token: RuntimeToken, now: datetime) -> None:
    """Raise ``SdkRegistrationRateExceeded`` when ``token`` created its minute's share of
    new instances. Call inside a transaction: the token row lock makes the count exact."""
    runtime_token_lock(token_id=token.pk)
    recent = SdkInstance.objects.filter(token=token, first_seen_at__gte=now - timedelta(minutes=1))
    limit = settings.RUNTIME_NEW_INSTANCES_PER_MINUTE
    if recent.count() >= limit:
        oldest = recent.order_by("first_seen_at").values_list("first_seen_at", flat=True)[0]
        wait = oldest + timedelta(minutes=1) - now
        raise SdkRegistrationRateExceeded(
            limit=limit, retry_after_s=max(1, int(wait.total_seconds()) + 1)
        )


@transaction.atomic
def _touch_instance(
    *, token: RuntimeToken, app_name: str, instance_id: str, defaults: dict[str, Any]
) -> SdkInstance:
    now = timezone.now()
    lookup = {
        "environment_id": token.environment_id,
        "app_name": app_name,
        "instance_id": instance_id,
    }
    values = {**defaults, "last_seen_at": now, "token": token}
    for _attempt in range(2):
        updated = SdkInstance.objects.filter(**lookup).update(**values)
        if updated:
            return SdkInstance.objects.get(**lookup)
        # A new (app name, instance id): one token must not grow this table without bound
        _new_instance_allowed(token, now)
        try:
            with transaction.atomic():
                return SdkInstance.objects.create(**lookup, **values, first_seen_at=now)
        except IntegrityError:
            continue  # registered concurrently: update the row that won
    return SdkInstance.objects.get(**lookup)


def sdk_instance_register(
    *,
    token: RuntimeToken,
    app_name: str,
    instance_id: str,
    sdk_version: str = "",
    strategies: Sequence[str] = (),
    started: datetime | None = None,
    interval_ms: int | None = None,
) -> SdkInstance:
    """``POST /api/client/register``: remember (or refresh) an SDK instance."""
    instance = _touch_instance(
        token=token,
        app_name=app_name,
        instance_id=instance_id,
        defaults={
            "sdk_version": sdk_version,
            "strategies": list(strategies),
            "started_at": started,
            "interval_ms": interval_ms,
        },
    )
    log.info(
        "sdk_instance.registered",
        environment_id=token.environment_id,
        app_name=app_name,
        instance_id=instance_id,
    )
    return instance


# The largest value of the bigint columns the totals live in (PostgreSQL ``bigint``).
COUNT_MAX = 2**63 - 1
UNKNOWN_LISTED = 100


@dataclass
class MetricsResult:
    """How many flags of a bucket were counted, and the names ignored as unknown."""

    recorded: int = 0
    unknown: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "unknown": self.unknown[:UNKNOWN_LISTED],
            "unknown_count": len(self.unknown),
        }


def flag_metrics_record(
    *,
    token: RuntimeToken,
    app_name: str,
    instance_id: str,
    start: datetime,
    toggles: Mapping[str, Mapping[str, Any]],
) -> MetricsResult:
    """``POST /api/client/metrics``: add one bucket's counts to the hour it started in.
    ``toggles`` is ``{flag name: {"yes": n, "no": n, "variants": {name: n}}}``, validated
    by ``validation.parse_metrics_toggles`` (each count 0..``MAX_BUCKET_COUNT``). Names
    that are no feature of the token's scope are ignored and returned as ``unknown``."""
    hour = _hour(start)
    environment_id = token.environment_id
    known = flag_names_known(
        environment_id=environment_id, agent_id=token.agent_id, names=toggles.keys()
    )
    result = MetricsResult(unknown=sorted(name for name in toggles if name not in known))
    usage_rows = []
    variant_rows = []
    for name in sorted(known):
        counts = toggles[name]
        yes, no = int(counts.get("yes") or 0), int(counts.get("no") or 0)
        where = {"environment_id": environment_id, "flag_name": name, "app_name": app_name}
        if yes or no:
            usage_rows.append({**where, "hour": hour, "yes": yes, "no": no})
        for variant, count in sorted((counts.get("variants") or {}).items()):
            if count:
                variant_rows.append(
                    {**where, "hour": hour, "variant": variant, "count": int(count)}
                )
    with transaction.atomic():
        # Added in the database (saturating at the bigint maximum), never read-modify-write.
        upsert(
            FlagUsage,
            usage_rows,
            conflict=("environment_id", "flag_name", "app_name", "hour"),
            add=("yes", "no"),
            saturate_at=COUNT_MAX,
        )
        upsert(
            FlagVariantUsage,
            variant_rows,
            conflict=("environment_id", "flag_name", "app_name", "hour", "variant"),
            add=("count",),
            saturate_at=COUNT_MAX,
        )
        try:
            _touch_instance(token=token, app_name=app_name, instance_id=instance_id, defaults={})
        except SdkRegistrationRateExceeded:
            # The counts are kept (they are for flags that exist); only the instance row,
            # which one token could multiply, is not created.
            log.warning("sdk_instance.registration_rate_exceeded", token_id=token.pk)
    result.recorded = len(known)
    if result.unknown:
        log.info(
            "flag_metrics.unknown_flags",
            environment_id=environment_id,
            app_name=app_name,
            count=len(result.unknown),
            first=result.unknown[:10],
        )
    return result
