from __future__ import annotations

from rest_framework import serializers

from apps.core.api import ExpectedVersionMixin, NullMeansAbsentMixin, OptionalReasonMixin

from ..models import Alert, AlertChannel, AlertDelivery

KINDS_HELP = 'Alert kinds this channel receives, e.g. ["rollout.rolled_back"]; empty: all.'


class AlertOutput(serializers.ModelSerializer):
    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True)
    acknowledged_by = serializers.CharField(source="acknowledged_label", read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "tenant",
            "tenant_slug",
            "kind",
            "severity",
            "title",
            "detail",
            "link",
            "subject_type",
            "subject_id",
            "created_at",
            "acknowledged_at",
            "acknowledged_by",
        ]
        read_only_fields = fields


class AlertDeliveryOutput(serializers.ModelSerializer):
    class Meta:
        model = AlertDelivery
        fields = [
            "id",
            "alert",
            "status",
            "attempts",
            "response_code",
            "error",
            "created_at",
            "last_attempt_at",
            "delivered_at",
        ]
        read_only_fields = fields


class AlertChannelOutput(serializers.ModelSerializer):
    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True)

    class Meta:
        model = AlertChannel
        fields = [
            "id",
            "tenant",
            "tenant_slug",
            "name",
            "url",
            "enabled",
            "kinds",
            "secret_prefix",
            "created_at",
            "updated_at",
            "version",
        ]
        read_only_fields = fields


class AlertChannelCreatedOutput(AlertChannelOutput):
    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret, shown only in this answer: the key of the "
        "X-Controlplane-Signature HMAC is its hex sha256.",
    )

    class Meta(AlertChannelOutput.Meta):
        fields = [*AlertChannelOutput.Meta.fields, "secret"]
        read_only_fields = fields


class AlertChannelCreateInput(NullMeansAbsentMixin, OptionalReasonMixin):
    tenant = serializers.IntegerField(help_text="tenant id")
    name = serializers.CharField(max_length=100)
    url = serializers.CharField(max_length=500, help_text="http(s) URL of a public receiver")
    kinds = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        default=list,
        max_length=20,
        help_text=KINDS_HELP,
    )
    enabled = serializers.BooleanField(default=True)


class AlertChannelUpdateInput(NullMeansAbsentMixin, ExpectedVersionMixin, OptionalReasonMixin):
    name = serializers.CharField(max_length=100, required=False)
    url = serializers.CharField(max_length=500, required=False)
    kinds = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        max_length=20,
        help_text=KINDS_HELP,
    )
    enabled = serializers.BooleanField(required=False)


class AlertChannelDeleteInput(ExpectedVersionMixin, OptionalReasonMixin):
    pass


class AlertChannelRotateInput(ExpectedVersionMixin, OptionalReasonMixin):
    pass
