from typing import Any

from rest_framework import serializers


class HeartbeatInput(serializers.Serializer):
    instance_id = serializers.RegexField(
        r"^[\w.:@/-]{1,128}$", help_text="stable per runtime process"
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    labels = serializers.DictField(
        child=serializers.CharField(max_length=200), required=False, default=dict
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
    revision = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None)
    digests = serializers.DictField(
        child=serializers.CharField(max_length=80), required=False, default=dict
    )
    error = serializers.CharField(required=False, allow_blank=True, max_length=4000, default="")
    push_url = serializers.URLField(required=False, allow_blank=True, max_length=500, default="")
    circuit_breakers = serializers.DictField(required=False, default=None, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["status"] and attrs["revision"] is None:
            raise serializers.ValidationError(
                {"revision": ["Say which revision you applied or rejected."]}
            )
        if attrs["status"] == "nack" and not attrs["error"].strip():
            raise serializers.ValidationError(
                {"error": ["A NACK must say why the revision was rejected."]}
            )
        if len(attrs["labels"]) > 50:
            raise serializers.ValidationError({"labels": ["At most 50 labels."]})
        return attrs


class HeartbeatOutput(serializers.Serializer):
    revision = serializers.IntegerField(help_text="the environment's current revision")
