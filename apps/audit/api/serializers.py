from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.diffs import json_changes

from ..links import target_links
from ..models import AuditEvent


class ChangeOutput(serializers.Serializer):
    """One field-level difference between ``before`` and ``after``."""

    path = serializers.CharField(help_text="e.g. strategies[0].parameters.rollout")
    # a CharField, not a ChoiceField: the OpenAPI enum would collide with other "kind" enums
    kind = serializers.CharField(help_text="changed, added or removed")
    before = serializers.JSONField(required=False, help_text="absent when added")
    after = serializers.JSONField(required=False, help_text="absent when removed")


def _reader(context: Mapping[str, Any]) -> Any:
    """The user the answer is for (the request's), or None outside a request."""
    request = context.get("request")
    return getattr(request, "user", None)


class AuditEventOutput(serializers.ModelSerializer):
    """An audit event with its field-level ``changes`` (from ``before`` to ``after``) and
    ``target_url``, the UI page of its target (null: no page, or the target is gone). A list
    view passes ``target_links`` (event id -> URL, built for the page at once) in the
    serializer context."""

    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True, default=None)
    changes = serializers.SerializerMethodField()
    target_url = serializers.SerializerMethodField()

    @extend_schema_field(ChangeOutput(many=True))
    def get_changes(self, event: AuditEvent) -> list[dict[str, Any]]:
        return [change.as_dict() for change in json_changes(event.before, event.after)]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_target_url(self, event: AuditEvent) -> str | None:
        links = self.context.get("target_links")
        if links is None:
            links = target_links([event], user=_reader(self.context))
        return links.get(event.pk)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "occurred_at",
            "actor_label",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "tenant",
            "tenant_slug",
            "reason",
            "before",
            "after",
            "changes",
            "target_url",
            "request_id",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class AuditCheckpointOutput(serializers.Serializer):
    """One signed checkpoint, exactly as exported (see apps/audit/checkpoints.py); the
    signature covers canonical JSON of every field but ``signature``."""

    format = serializers.CharField()
    created_at = serializers.CharField(help_text="ISO 8601, as signed")
    event_id = serializers.IntegerField(help_text="id of the chain head")
    event_count = serializers.IntegerField(help_text="events up to and including the head")
    head_hash = serializers.CharField(help_text="sha256 chain hash of the head event")
    kid = serializers.CharField(help_text="signing key id, see GET /api/runtime/v1/keys")
    signature = serializers.CharField(help_text="base64 Ed25519 signature")
