"""How a runtime stands against its environment's revision (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

IN_SYNC, BEHIND, NACK, STALE, NEW = "in sync", "behind", "NACK", "stale", "registered"
BADGE = {IN_SYNC: "ok", BEHIND: "warn", NEW: "warn", NACK: "bad", STALE: "neutral"}


@dataclass(frozen=True)
class RuntimeStatus:
    label: str
    behind_by: int = 0
    detail: str = ""

    @property
    def badge(self) -> str:
        return BADGE[self.label]


def runtime_status(
    *,
    last_seen_at: datetime,
    last_report: str,
    applied_revision: int | None,
    nack_revision: int | None,
    nack_error: str,
    current_revision: int,
    now: datetime,
    stale_after: timedelta,
) -> RuntimeStatus:
    if now - last_seen_at > stale_after:
        return RuntimeStatus(
            STALE, detail=f"no heartbeat for {int((now - last_seen_at).total_seconds())} s"
        )
    if (
        last_report == "nack"
        and nack_revision is not None
        and nack_revision > (applied_revision or 0)
    ):
        return RuntimeStatus(NACK, detail=f"rejected revision {nack_revision}: {nack_error}")
    if applied_revision is None:
        return RuntimeStatus(
            NEW, behind_by=current_revision, detail="has not applied any revision yet"
        )
    if applied_revision >= current_revision:
        return RuntimeStatus(IN_SYNC)
    behind = current_revision - applied_revision
    return RuntimeStatus(
        BEHIND, behind_by=behind, detail=f"{behind} revision{'s' if behind > 1 else ''} behind"
    )
