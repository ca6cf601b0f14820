from rest_framework import serializers

from ..models import AuditEvent


class AuditEventOutput(serializers.ModelSerializer):
    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True, default=None)

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
