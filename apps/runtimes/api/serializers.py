"""Heartbeat shapes. Every field is bounded (entries, lengths, integer ranges of their columns)
so one runtime token cannot store megabytes or a value the database refuses (issue 9)."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from apps.core.api import NullMeansAbsentMixin
from apps.core.outbound import PushTargetRefused, push_target_resolve

# PostgreSQL bigint, the column of applied_revision and nack_revision.
MAX_REVISION = 2**63 - 1
MAX_LABELS = 50
MAX_DIGESTS = 50
MAX_AGENTS = 50
MAX_BREAKERS = 100
MAX_KEY_LENGTH = 100
MAX_FAILURES = 2**31 - 1
# Printable keys only: no NUL (PostgreSQL's jsonb refuses it) and no other control characters.
_KEY = re.compile(r"^[^\x00-\x1f\x7f]{1," + str(MAX_KEY_LENGTH) + "}$")


class BoundedDictField(serializers.DictField):
    """A JSON object with at most ``max_entries`` entries and printable keys of at most
    ``MAX_KEY_LENGTH`` characters; values validated by ``child``."""

    def __init__(self, *, max_entries: int, **kwargs: Any) -> None:
        self.max_entries = max_entries
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            if len(data) > self.max_entries:
                raise serializers.ValidationError(f"At most {self.max_entries} entries.")
            bad = [str(key)[:40] for key in data if not _KEY.match(str(key))]
            if bad:
                raise serializers.ValidationError(
                    f"Keys must be 1 to {MAX_KEY_LENGTH} printable characters: {bad[0]!r}."
                )
        return super().to_internal_value(data)


class CircuitBreakerInput(serializers.Serializer):
    """One tool's breaker, as ``dataplane.breaker.CircuitBreaker.report()`` sends it."""

    state = serializers.ChoiceField(choices=["closed", "open", "half_open"])
    failures = serializers.IntegerField(min_value=0, max_value=MAX_FAILURES, default=0)


class HeartbeatInput(NullMeansAbsentMixin, serializers.Serializer):
    instance_id = serializers.RegexField(
        r"^[\w.:@/-]{1,128}$", help_text="stable per runtime process"
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    labels = BoundedDictField(
        max_entries=MAX_LABELS,
        child=serializers.CharField(max_length=200),
        required=False,
        default=dict,
    )
    library_version = serializers.CharField(
        required=False, allow_blank=True, max_length=40, default=""
    )
    status = serializers.ChoiceField(
        choices=["ack", "nack"],
        required=False,
        default=None,
        allow_null=True,
        help_text="ack: applied `revision`; nack: rejected it (give `error`)",
    )
    revision = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_REVISION, default=None
    )
    digests = BoundedDictField(
        max_entries=MAX_DIGESTS,
        child=serializers.CharField(max_length=80),
        required=False,
        default=dict,
    )
    agents = serializers.ListField(
        child=serializers.RegexField(r"^[^\x00-\x1f\x7f]{1,100}$"),
        max_length=MAX_AGENTS,
        required=False,
        default=None,
        allow_null=True,
        help_text="slugs of the agents this runtime serves; per-agent convergence counts it "
        "for these only. Absent: the agents of `digests`; neither: every agent of the "
        'environment (shown as "all")',
    )
    error = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")
    push_url = serializers.URLField(
        required=False,
        allow_blank=True,
        max_length=500,
        default="",
        help_text="webhook target; must resolve to a public address unless the operator "
        "allows its network (RUNTIME_PUSH_ALLOWED_CIDRS)",
    )
    circuit_breakers = BoundedDictField(
        max_entries=MAX_BREAKERS,
        child=CircuitBreakerInput(),
        required=False,
        default=None,
        allow_null=True,
        help_text="tool name → {state: closed|open|half_open, failures}",
    )

    def validate_push_url(self, value: str) -> str:
        # Resolving costs a DNS lookup: only a new or changed target is checked here (the
        # push checks again, whatever it was, when it connects).
        if value and value != self.context.get("known_push_url"):
            try:
                push_target_resolve(value)
            except PushTargetRefused as exc:
                raise serializers.ValidationError(str(exc)) from exc
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["status"] and attrs["revision"] is None:
            raise serializers.ValidationError(
                {"revision": ["Say which revision you applied or rejected."]}
            )
        if attrs["status"] == "nack" and not attrs["error"].strip():
            raise serializers.ValidationError(
                {"error": ["A NACK must say why the revision was rejected."]}
            )
        return attrs


class HeartbeatOutput(serializers.Serializer):
    revision = serializers.IntegerField(help_text="the environment's current revision")
