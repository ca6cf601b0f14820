"""Signed checkpoints of the audit chain head, and where their copies go.

The hash chain alone detects an edited event, not a rewritten chain: whoever can write the
database can edit an event and recompute every hash after it, delete the newest events, or
empty the table, and the chain still verifies. A checkpoint is the control plane's Ed25519
signature over ``(event_id, event_count, head_hash, created_at)`` of the chain head at one
moment. A copy kept outside the database (a file on other storage, a webhook that appends to
an object store or a SIEM) pins the history up to that head: ``audit verify --checkpoints FILE``
then finds a rewritten event (the head hash differs), deleted newest events or an emptied
table (the chain ends before a checkpoint's head). See docs/decisions/0009-audit-checkpoints.md.

The signing key belongs to the bundles app (its registry of published keys is what runtimes
verify against), which sits above audit; so the key is injected: the bundles app registers
itself as the ``CheckpointSigner`` when Django starts (``BundlesConfig.ready``).

Export format: one JSON object per line (JSON Lines), each ``record`` below; files only grow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import requests
from django.core.exceptions import ImproperlyConfigured

from .hashing import canonical_json

FORMAT = "controlplane.audit-checkpoint/1"
SIGNED_FIELDS = ("format", "created_at", "event_id", "event_count", "head_hash", "kid")
RECORD_FIELDS = (*SIGNED_FIELDS, "signature")


class CheckpointSigner(Protocol):
    """What signs and verifies checkpoints: ``active_key_id()``; ``sign(data) -> (kid,
    base64 signature)`` with the active key; ``verify(data, kid=..., signature=...) -> bool``
    against any published key, retired ones included."""

    def active_key_id(self) -> str: ...

    def sign(self, data: bytes) -> tuple[str, str]: ...

    def verify(self, data: bytes, *, kid: str, signature: str) -> bool: ...


_signer: CheckpointSigner | None = None


def register_checkpoint_signer(signer: CheckpointSigner) -> None:
    """Called once at start-up by the app that owns the signing key."""
    global _signer  # one process-wide seam, set in AppConfig.ready
    _signer = signer


def checkpoint_signer() -> CheckpointSigner:
    if _signer is None:
        raise ImproperlyConfigured(
            "No audit checkpoint signer is registered: apps.bundles (which owns the signing "
            "key) must be in INSTALLED_APPS."
        )
    return _signer


class CheckpointFileError(ValueError):
    """A checkpoint file or record that cannot be read; the message names the line/field."""


def signed_bytes(record: dict[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers: canonical JSON of the signed fields."""
    return canonical_json({name: record[name] for name in SIGNED_FIELDS})


def parse_record(value: Any, *, where: str) -> dict[str, Any]:
    """A checkpoint record checked for shape (not yet for its signature).

    Raises ``CheckpointFileError`` naming ``where`` (e.g. "line 3") and the field."""
    if not isinstance(value, dict):
        raise CheckpointFileError(f"{where}: a checkpoint must be a JSON object")
    if value.get("format") != FORMAT:
        raise CheckpointFileError(f"{where}: format must be {FORMAT!r}")
    for name in ("event_id", "event_count"):
        number = value.get(name)
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise CheckpointFileError(f"{where}: {name} must be a positive integer")
    for name in ("created_at", "head_hash", "kid", "signature"):
        if not isinstance(value.get(name), str) or not value[name]:
            raise CheckpointFileError(f"{where}: {name} must be a non-empty string")
    return {name: value[name] for name in RECORD_FIELDS}


def read_file(path: Path) -> list[dict[str, Any]]:
    """Every checkpoint in a JSON Lines file, oldest first. A missing file has none."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CheckpointFileError(f"{path} line {number}: not JSON ({exc.msg})") from None
        records.append(parse_record(value, where=f"{path} line {number}"))
    return sorted(records, key=lambda r: r["event_id"])


def append_to_file(path: Path, records: list[dict[str, Any]]) -> int:
    """Append the records newer than the file's newest checkpoint; returns how many.

    Never rewrites what the file holds: a copy that only grows is what makes it evidence (a
    record the database no longer has, or has differently, stays as it was)."""
    newest = max((r["event_id"] for r in read_file(path)), default=0)
    fresh = [r for r in sorted(records, key=lambda r: r["event_id"]) if r["event_id"] > newest]
    if fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            for record in fresh:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
    return len(fresh)


def post_to_webhook(url: str, records: list[dict[str, Any]], *, timeout_s: float) -> None:
    """POST ``{"checkpoints": [...]}`` as JSON to an operator-chosen URL.

    Redirects are not followed and the timeout is short; a non-2xx answer raises
    ``requests.HTTPError`` (the caller retries)."""
    response = requests.post(
        url,
        json={"checkpoints": records},
        timeout=timeout_s,
        allow_redirects=False,
        headers={"User-Agent": "agent-controlplane audit-checkpoints"},
    )
    if not 200 <= response.status_code < 300:
        raise requests.HTTPError(
            f"{url} answered {response.status_code} to the checkpoint export", response=response
        )
