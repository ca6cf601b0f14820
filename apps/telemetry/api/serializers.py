"""Shapes of ``POST /api/runtime/v1/records`` for the OpenAPI schema. The view checks items by
hand (``apps.telemetry.validation``, one item at a time, errors by JSON pointer); these
serializers only describe the body and the answer."""

from __future__ import annotations

from rest_framework import serializers

from ..models import Outcome, Thumbs, Variant


class FeedbackInput(serializers.Serializer):
    thumbs = serializers.ChoiceField(choices=Thumbs.choices, required=False, allow_null=True)
    score = serializers.FloatField(required=False, allow_null=True)


class RecordInput(serializers.Serializer):
    """One request record. ``tenant`` and ``environment`` come from the token."""

    request_id = serializers.CharField(max_length=128, help_text="idempotency key per tenant")
    agent = serializers.CharField(max_length=50, help_text="the agent's slug")
    session_id = serializers.CharField(max_length=128, required=False)
    end_user_hash = serializers.CharField(
        max_length=128, required=False, help_text="hashed by the runtime; never a raw id"
    )
    version_digest = serializers.CharField(max_length=80, required=False)
    variant = serializers.ChoiceField(choices=Variant.choices, required=False, default="stable")
    started_at = serializers.DateTimeField(help_text="RFC 3339 with offset")
    latency_ms = serializers.IntegerField(min_value=0)
    steps = serializers.IntegerField(min_value=0, required=False)
    tool_calls = serializers.IntegerField(min_value=0, required=False)
    tool_failures = serializers.IntegerField(min_value=0, required=False)
    wrong_actions = serializers.IntegerField(
        min_value=0, required=False, help_text="actions the runtime later judged wrong"
    )
    tokens_in = serializers.IntegerField(min_value=0, required=False)
    tokens_out = serializers.IntegerField(min_value=0, required=False)
    cost_usd = serializers.DecimalField(
        max_digits=18, decimal_places=8, min_value=0, required=False, coerce_to_string=False
    )
    model = serializers.CharField(max_length=120, required=False)
    outcome = serializers.ChoiceField(choices=Outcome.choices)
    error_code = serializers.CharField(max_length=120, required=False)
    trace_id = serializers.CharField(max_length=128, required=False)
    feedback = FeedbackInput(required=False, allow_null=True)
    quality_score = serializers.FloatField(required=False, allow_null=True)


class BucketInput(serializers.Serializer):
    """One pre-aggregated 10-second bucket (docs/runtime-api.md)."""

    bucket_start = serializers.DateTimeField(help_text="RFC 3339, on a 10-second boundary")
    agent = serializers.CharField(max_length=50)
    version_digest = serializers.CharField(max_length=80, required=False)
    variant = serializers.ChoiceField(choices=Variant.choices, required=False, default="stable")
    count_success = serializers.IntegerField(min_value=0, required=False)
    count_error = serializers.IntegerField(min_value=0, required=False)
    count_policy_denied = serializers.IntegerField(min_value=0, required=False)
    count_escalated = serializers.IntegerField(min_value=0, required=False)
    count_budget_blocked = serializers.IntegerField(min_value=0, required=False)
    count_killed = serializers.IntegerField(min_value=0, required=False)
    latency_sketch = serializers.CharField(
        help_text="base64 of a DDSketch protobuf (relative accuracy 0.01) of the latencies in ms"
    )
    latency_sum_ms = serializers.IntegerField(min_value=0, required=False)
    tokens_in = serializers.IntegerField(min_value=0, required=False)
    tokens_out = serializers.IntegerField(min_value=0, required=False)
    cost_usd = serializers.DecimalField(
        max_digits=20, decimal_places=8, min_value=0, required=False, coerce_to_string=False
    )
    steps = serializers.IntegerField(min_value=0, required=False)
    tool_calls = serializers.IntegerField(min_value=0, required=False)
    tool_failures = serializers.IntegerField(min_value=0, required=False)
    wrong_actions = serializers.IntegerField(
        min_value=0, required=False, help_text="actions the runtime later judged wrong"
    )
    feedback_up = serializers.IntegerField(min_value=0, required=False)
    feedback_down = serializers.IntegerField(min_value=0, required=False)
    feedback_score_sum = serializers.FloatField(required=False)
    feedback_score_count = serializers.IntegerField(min_value=0, required=False)
    quality_sum = serializers.FloatField(required=False)
    quality_count = serializers.IntegerField(min_value=0, required=False)


class BatchInput(serializers.Serializer):
    records = RecordInput(many=True, required=False, help_text="at most 1,000")
    instance_id = serializers.CharField(
        max_length=128, required=False, help_text="the sending runtime instance (with buckets)"
    )
    buckets = BucketInput(many=True, required=False, help_text="at most 1,000")


class RejectedItem(serializers.Serializer):
    """A refused item (schema only; ``errors`` would shadow ``Serializer.errors`` as an
    attribute, hence ``get_fields``)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "pointer": serializers.CharField(help_text="JSON pointer of the refused item"),
            "errors": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField()),
                help_text="messages by JSON pointer of the offending value",
            ),
        }


class IngestOutput(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="items stored and counted now")
    duplicates = serializers.IntegerField(help_text="items already stored (not counted again)")
    rejected = RejectedItem(many=True)
