"""How the approvals pages put things into words: waiting time against the queue's SLA, the
risk and status badges, durations, and the call's arguments as a readable tree with the
fields changed since the last approved call of the same tool marked.

Pure functions of what the selectors return; no queries."""

from __future__ import annotations

import json
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from apps.core.input_guards import is_digits

from .models import ApprovalRequest, Status

# The inbox's badge turns to "near" at this share of the queue's SLA.
NEAR_SLA = 0.75
# Deeper argument values are shown as compact JSON: a hostile runtime may nest thousands of
# levels within the 16 KiB limit, and each level is a template include.
MAX_DEPTH = 6
MAX_TEXT = 2000

RISK_CLASS = {"read": "neutral", "write": "warn", "critical": "bad"}
STATUS_CLASS = {
    Status.PENDING: "warn",
    Status.APPROVED: "ok",
    Status.REJECTED: "bad",
    Status.EXPIRED: "neutral",
    Status.CANCELLED: "neutral",
}
STATUS_WORDS = {
    Status.PENDING: "waiting",
    Status.APPROVED: "approved",
    Status.REJECTED: "rejected",
    Status.EXPIRED: "expired (denied)",
    Status.CANCELLED: "cancelled",
}


def zone_of(time_zone: str) -> tzinfo:
    """The tenant's zone (UTC for a name the zone database does not know)."""
    try:
        return zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def duration(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``; ``—`` for None."""
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@dataclass(frozen=True)
class Waiting:
    """How long a request has waited against its queue's SLA: ``state`` ok | near | over
    (``css`` the badge class), ``words`` the badge's text, ``title`` the detail."""

    state: str
    css: str
    words: str
    title: str


def waiting(request: ApprovalRequest, now: datetime) -> Waiting:
    """The waiting badge of a request (for a decided one: how long it waited)."""
    end = request.decided_at or now
    waited = (end - request.created_at).total_seconds()
    sla = request.queue.sla_s
    if waited > sla:
        state, css, word = "over", "bad", "over SLA"
    elif waited >= NEAR_SLA * sla:
        state, css, word = "near", "warn", "near SLA"
    else:
        state, css, word = "ok", "ok", "within SLA"
    return Waiting(
        state=state,
        css=css,
        words=f"{duration(waited)} · {word}",
        title=f"waited {duration(waited)}; the queue {request.queue.name}'s SLA is {duration(sla)}",
    )


def decided_by(request: ApprovalRequest) -> str:
    """Who decided, in words: ``alice``, ``alice and bob``; "" when nobody did."""
    names = [name for name in request.decided_by_label.split(",") if name]
    return " and ".join(names)


def scalar(value: Any, *, limit: int | None = MAX_TEXT) -> str:
    """A JSON value as a person reads it: strings as they are, the rest as JSON; cut at
    ``limit`` characters (None: whole, as the detail pane shows what an approval pins)."""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
    )
    return text if limit is None or len(text) <= limit else text[:limit] + "…"


def preview(arguments: Any, *, limit: int = 3) -> str:
    """A one-line summary of the arguments for the inbox's list: ``order_id A-1 · amount 42.5``."""
    if not isinstance(arguments, dict) or not arguments:
        return ""
    parts = []
    # plain values say more in one line than nested ones: them first
    ordered = sorted(arguments.items(), key=lambda item: isinstance(item[1], dict | list))
    for key, value in ordered[:limit]:
        shown = scalar(value) if not isinstance(value, dict | list) else "{…}"
        if isinstance(value, list):
            shown = f"[{len(value)} items]"
        parts.append(f"{key} {shown[:40]}{'…' if len(shown) > 40 else ''}")
    more = len(arguments) - limit
    return " · ".join(parts) + (f" · +{more} more" if more > 0 else "")


@dataclass
class ArgumentRow:
    """One argument (or nested field) of the detail pane. ``kind``: scalar | object | list |
    redacted; ``change``: "" | "changed" | "added" (against the last approved call);
    ``before``: the previous value's text when changed."""

    key: str
    path: str
    kind: str
    text: str = ""
    children: list[ArgumentRow] = field(default_factory=list)
    change: str = ""
    before: str = ""
    empty: bool = False


def _row(
    key: str,
    path: str,
    value: Any,
    changes: dict[str, tuple[Any, Any]],
    redacted: set[str],
    depth: int,
) -> ArgumentRow:
    change, before = "", ""
    if path in changes:
        old, _ = changes[path]
        change, before = ("added", "") if old == "" else ("changed", scalar(old, limit=None))
    if path in redacted or value == "[redacted]":
        return ArgumentRow(key, path, "redacted", "redacted", change=change, before=before)
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        text = scalar(value, limit=None)
        return ArgumentRow(key, path, "scalar", text, change=change, before=before)
    if isinstance(value, dict):
        children = [
            _row(str(k), f"{path}.{k}", v, changes, redacted, depth + 1) for k, v in value.items()
        ]
        return ArgumentRow(key, path, "object", "", children, change, before, empty=not children)
    if isinstance(value, list):
        children = [
            _row(str(i + 1), f"{path}.{i}", v, changes, redacted, depth + 1)
            for i, v in enumerate(value)
        ]
        return ArgumentRow(key, path, "list", "", children, change, before, empty=not children)
    # whole: the approver must be able to read all that the approval pins (at most 16 KiB)
    return ArgumentRow(key, path, "scalar", scalar(value, limit=None), change=change, before=before)


def argument_rows(
    arguments: Any, changes: dict[str, tuple[Any, Any]], redacted: list[str]
) -> list[ArgumentRow]:
    """The arguments as rows for a definition list, nested values as nested rows (lists
    numbered from 1), each marked when ``changes`` (``selectors.argument_changes``) says it
    changed or was added."""
    if not isinstance(arguments, dict):
        return [ArgumentRow("value", "", "scalar", scalar(arguments))]
    return [_row(str(k), str(k), v, changes, set(redacted), 1) for k, v in arguments.items()]


def _present(arguments: Any, path: str) -> bool:
    holder = arguments
    for part in path.split("."):
        if isinstance(holder, dict) and part in holder:
            holder = holder[part]
        elif isinstance(holder, list) and is_digits(part) and int(part) < len(holder):
            holder = holder[int(part)]
        else:
            return False
    return True


@dataclass(frozen=True)
class Change:
    """One line of the diff table: the field, its kind (changed | added | removed) and both
    values as text."""

    path: str
    kind: str
    before: str
    after: str


def change_lines(arguments: Any, changes: dict[str, tuple[Any, Any]]) -> list[Change]:
    """The diff against the last approved call as table lines, in path order."""
    lines = []
    for path, (before, after) in changes.items():
        if after == "" and not _present(arguments, path):
            lines.append(Change(path, "removed", scalar(before, limit=None), ""))
        elif before == "":
            lines.append(Change(path, "added", "", scalar(after, limit=None)))
        else:
            lines.append(
                Change(path, "changed", scalar(before, limit=None), scalar(after, limit=None))
            )
    return lines
