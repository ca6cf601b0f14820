from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import Any

from rest_framework import serializers

from apps.core.api import OptionalReasonMixin

from ..gates import GateStatus, rate_floor
from ..models import BundleVersion, Evaluation


class BundleVersionOutput(serializers.ModelSerializer):
    agent_slug = serializers.CharField(source="agent.slug", read_only=True)
    # DRF's metaclass moves declared fields off the class, so this does not shadow Field.parent.
    parent = serializers.SerializerMethodField(  # type: ignore[assignment]
        help_text="number of the version this one was made from"
    )
    author = serializers.CharField(source="author_label", read_only=True)

    class Meta:
        model = BundleVersion
        fields = [
            "id",
            "agent",
            "agent_slug",
            "number",
            "parent",
            "digest",
            "signing_key_id",
            "signature",
            "message",
            "author",
            "created_at",
            "warnings",
        ]
        read_only_fields = fields

    def get_parent(self, version: BundleVersion) -> int | None:
        return version.parent.number if version.parent_id and version.parent else None


class PushOutput(BundleVersionOutput):
    created = serializers.SerializerMethodField(
        help_text="false when identical content was already a version"
    )

    class Meta(BundleVersionOutput.Meta):
        fields = [*BundleVersionOutput.Meta.fields, "created"]
        read_only_fields = fields

    def get_created(self, version: BundleVersion) -> bool:
        return bool(self.context.get("created"))


class SuiteCheckOutput(serializers.Serializer):
    suite = serializers.CharField()
    min_pass_rate = serializers.DecimalField(max_digits=5, decimal_places=4)
    # cut, never rounded up past the minimum (issue 8, kind 5): 1999999 of 2000000 is
    # 0.999999, not 1.0 beside an unmet minimum of 1
    pass_rate = serializers.DecimalField(
        max_digits=7, decimal_places=6, allow_null=True, rounding=ROUND_FLOOR
    )
    passed = serializers.IntegerField(allow_null=True)
    failed = serializers.IntegerField(allow_null=True)
    met = serializers.BooleanField()
    reason = serializers.CharField()


class GateStatusOutput(serializers.Serializer):
    environment_id = serializers.IntegerField()
    environment = serializers.CharField(source="environment_name")
    configured = serializers.BooleanField()
    met = serializers.BooleanField()
    state = serializers.ChoiceField(choices=["none", "met", "waiting", "failing"])
    summary = serializers.CharField()
    checks = SuiteCheckOutput(many=True)

    def to_representation(self, instance: GateStatus) -> dict[str, Any]:
        data = super().to_representation(instance)
        for check in data["checks"]:
            if check["pass_rate"] is not None:
                # six decimals at most (cut by the field): exact as a float's repr, without
                # the trailing zeros
                check["pass_rate"] = str(float(Decimal(check["pass_rate"])))
        return data


class BundleVersionDetailOutput(BundleVersionOutput):
    content = serializers.JSONField(read_only=True, help_text="the bundle, as digested and signed")
    size_bytes = serializers.IntegerField(read_only=True)
    gates = serializers.SerializerMethodField()

    class Meta(BundleVersionOutput.Meta):
        fields = [
            *BundleVersionOutput.Meta.fields,
            "source_format",
            "size_bytes",
            "content",
            "gates",
        ]
        read_only_fields = fields

    def get_gates(self, version: BundleVersion) -> list[dict[str, Any]]:
        return GateStatusOutput(self.context.get("gates", []), many=True).data  # type: ignore[return-value]


class BundleErrorSerializer(serializers.Serializer):
    """Documents the 400 body; declared fields leave the class, so ``errors`` is a field here."""

    detail = serializers.CharField()
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text="keys are JSON pointers into the bundle ('' = the whole file)",
    )
    warnings = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    lines = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="pointer -> 1-based line in the file of each error and warning",
    )


class ValidateOutput(serializers.Serializer):
    valid = serializers.BooleanField()
    digest = serializers.CharField(allow_null=True)
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField())
    )
    warnings = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    lines = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="pointer -> 1-based line in the file of each error and warning",
    )


class EvaluationInput(serializers.Serializer):
    suite = serializers.CharField(max_length=64, help_text="e.g. golden, adversarial")
    passed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)
    score = serializers.FloatField(required=False, allow_null=True, default=None)
    report_url = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    run_id = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=200,
        help_text="CI run id: posting the same run again is a no-op",
    )


class EvaluationOutput(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)
    created_by = serializers.CharField(source="created_by_label", read_only=True)
    pass_rate = serializers.SerializerMethodField()

    class Meta:
        model = Evaluation
        fields = [
            "id",
            "version",
            "suite",
            "passed",
            "failed",
            "pass_rate",
            "score",
            "report_url",
            "run_id",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_pass_rate(self, evaluation: Evaluation) -> float | None:
        rate = evaluation.pass_rate
        return float(rate_floor(rate)) if rate is not None else None


class GateRequirementSerializer(serializers.Serializer):
    suite = serializers.CharField(max_length=64)
    min_pass_rate = serializers.DecimalField(
        max_digits=5,
        decimal_places=4,
        min_value=0,
        max_value=1,
        help_text="share of cases that must pass, 0-1",
    )


class PromotionGateInput(OptionalReasonMixin):
    requirements = GateRequirementSerializer(many=True, allow_empty=True)


class PromotionGateOutput(serializers.Serializer):
    environment = serializers.IntegerField(source="environment.pk")
    environment_slug = serializers.CharField(source="environment.slug")
    tenant_slug = serializers.CharField(source="environment.tenant.slug")
    requirements = GateRequirementSerializer(many=True)
    updated_at = serializers.DateTimeField(source="gate.updated_at", allow_null=True, default=None)
    updated_by = serializers.CharField(
        source="gate.updated_by_label", allow_null=True, default=None
    )


class SigningKeyOutput(serializers.Serializer):
    kid = serializers.CharField()
    alg = serializers.CharField()
    public_key = serializers.CharField(help_text="raw 32-byte Ed25519 public key, base64")
    created_at = serializers.DateTimeField()
    active = serializers.BooleanField()
    retired_at = serializers.DateTimeField(allow_null=True)


class SigningKeysOutput(serializers.Serializer):
    keys = SigningKeyOutput(many=True, help_text="active key first; retired keys stay listed")
