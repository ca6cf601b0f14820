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
