from __future__ import annotations

from rest_framework import serializers

from apps.core.api import (
    ExpectedVersionMixin,
    NullMeansAbsentMixin,
    OptionalReasonMixin,
    ReasonSerializer,
)

from ..models import (
    AgentMode,
    Flag,
    FlagType,
    KillSwitch,
    KillSwitchKind,
    KillSwitchScope,
    SdkInstance,
    Segment,
)
from ..unleash import kill_feature_name
from ..validation import MAX_BUCKET_COUNT, MAX_BUCKET_FLAGS

JSON_LIST_HELP = "Unleash documents, validated field by field (errors come back keyed by path)."

# --------------------------------------------------------------------------- flags


class FlagOutput(serializers.ModelSerializer):
    environment_slug = serializers.CharField(source="environment.slug", read_only=True)
    tenant_slug = serializers.CharField(source="environment.tenant.slug", read_only=True)

    class Meta:
        model = Flag
        fields = [
            "id",
            "environment",
            "environment_slug",
            "tenant_slug",
            "name",
            "description",
            "type",
            "enabled",
            "impression_data",
            "stale",
            "project",
            "strategies",
            "variants",
            "dependencies",
            "import_warnings",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class FlagCreateInput(OptionalReasonMixin):
    environment = serializers.IntegerField(help_text="environment id")
    name = serializers.CharField(max_length=200, trim_whitespace=False)
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=5000
    )
    type = serializers.ChoiceField(choices=FlagType.choices, default=FlagType.RELEASE)
    enabled = serializers.BooleanField(default=False)
    impression_data = serializers.BooleanField(default=False)
    strategies = serializers.JSONField(required=False, help_text=JSON_LIST_HELP)
    variants = serializers.JSONField(required=False, help_text=JSON_LIST_HELP)
    dependencies = serializers.JSONField(required=False, help_text=JSON_LIST_HELP)


class FlagUpdateInput(ExpectedVersionMixin, OptionalReasonMixin):
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    type = serializers.ChoiceField(choices=FlagType.choices, required=False)
    enabled = serializers.BooleanField(required=False)
    impression_data = serializers.BooleanField(required=False)
    stale = serializers.BooleanField(required=False)
    strategies = serializers.JSONField(required=False, help_text=JSON_LIST_HELP)
    variants = serializers.JSONField(required=False, help_text=JSON_LIST_HELP)
    dependencies = serializers.JSONField(required=False, help_text=JSON_LIST_HELP)


class FlagToggleInput(ExpectedVersionMixin, OptionalReasonMixin):
    enabled = serializers.BooleanField(help_text="on or off; production requires a reason")


class FlagDeleteInput(ExpectedVersionMixin, OptionalReasonMixin):
    """A delete's optional body: why (production requires it) and the version it acts on."""


class SegmentDeleteInput(ExpectedVersionMixin, OptionalReasonMixin):
    """A segment delete's optional body: why and the version it acts on."""


class FlagImportInput(OptionalReasonMixin):
    environment = serializers.IntegerField(help_text="environment id")
    mode = serializers.ChoiceField(
        choices=[("merge", "merge"), ("replace", "replace")],
        default="merge",
        help_text="merge keeps flags not in the payload; replace deletes them",
    )
    payload = serializers.JSONField(
        help_text="an Unleash client-features payload (v1/v2) or delta events"
    )


class FlagImportOutput(serializers.Serializer):
    mode = serializers.CharField()
    revision = serializers.IntegerField()
    created = serializers.ListField(child=serializers.CharField())
    updated = serializers.ListField(child=serializers.CharField())
    unchanged = serializers.ListField(child=serializers.CharField())
    deleted = serializers.ListField(child=serializers.CharField())
    segments_created = serializers.ListField(child=serializers.IntegerField())
    segments_updated = serializers.ListField(child=serializers.IntegerField())
    segments_deleted = serializers.ListField(child=serializers.IntegerField())
    warnings = serializers.ListField(child=serializers.CharField())


class SdkInstanceOutput(serializers.ModelSerializer):
    class Meta:
        model = SdkInstance
        fields = [
            "app_name",
            "instance_id",
            "sdk_version",
            "strategies",
            "started_at",
            "interval_ms",
            "first_seen_at",
            "last_seen_at",
        ]
        read_only_fields = fields


class UsageHourOutput(serializers.Serializer):
    hour = serializers.DateTimeField()
    yes = serializers.IntegerField()
    no = serializers.IntegerField()


class FlagUsageOutput(serializers.Serializer):
    instances = SdkInstanceOutput(many=True)
    hourly = UsageHourOutput(many=True)
    variants = serializers.ListField(child=serializers.DictField())


# --------------------------------------------------------------------------- segments


class SegmentOutput(serializers.ModelSerializer):
    environment_slug = serializers.CharField(source="environment.slug", read_only=True)

    class Meta:
        model = Segment
        fields = [
            "id",
            "environment",
            "environment_slug",
            "segment_id",
            "name",
            "description",
            "constraints",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SegmentCreateInput(OptionalReasonMixin):
    environment = serializers.IntegerField(help_text="environment id")
    segment_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Unleash segment id; next free if omitted"
    )
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=5000
    )
    constraints = serializers.JSONField(help_text=JSON_LIST_HELP)


class SegmentUpdateInput(ExpectedVersionMixin, OptionalReasonMixin):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    constraints = serializers.JSONField(required=False, help_text=JSON_LIST_HELP)


# --------------------------------------------------------------------------- kill switches


class KillSwitchOutput(serializers.ModelSerializer):
    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True, default=None)
    agent_slug = serializers.CharField(source="agent.slug", read_only=True, default=None)
    environment_slug = serializers.CharField(
        source="environment.slug", read_only=True, default=None
    )
    status = serializers.SerializerMethodField()
    feature_name = serializers.SerializerMethodField()

    class Meta:
        model = KillSwitch
        fields = [
            "id",
            "kind",
            "scope",
            "tenant",
            "tenant_slug",
            "agent",
            "agent_slug",
            "environment",
            "environment_slug",
            "tool_pattern",
            "mode",
            "reason",
            "status",
            "feature_name",
            "engaged_at",
            "engaged_by_label",
            "engaged_revisions",
            "released_at",
            "released_by_label",
            "release_reason",
            "released_revisions",
            "version",
        ]
        read_only_fields = fields

    def get_status(self, obj: KillSwitch) -> str:
        return "engaged" if obj.is_engaged else "released"

    def get_feature_name(self, obj: KillSwitch) -> str:
        return kill_feature_name(
            kind=obj.kind,
            agent=obj.agent.slug if obj.agent else None,
            tool_pattern=obj.tool_pattern,
            mode=obj.mode,
        )


class KillSwitchEngageOutput(KillSwitchOutput):
    """The switch just engaged, with ``warnings``: what looked wrong but was engaged anyway."""

    warnings = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="what looks wrong but was engaged anyway, in words: a tool name or glob "
        "matching no tool of the deployed versions it reaches, an agent deployed nowhere",
    )

    class Meta(KillSwitchOutput.Meta):
        fields = [*KillSwitchOutput.Meta.fields, "warnings"]
        read_only_fields = fields


class KillSwitchReleaseInput(ExpectedVersionMixin, ReasonSerializer):
    """Release: a reason, and optionally the ``version`` read (1 while engaged)."""


class KillSwitchEngageInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=KillSwitchKind.choices)
    scope = serializers.ChoiceField(choices=KillSwitchScope.choices)
    tenant = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="tenant id (implied by agent or environment)",
    )
    agent = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="agent id"
    )
    environment = serializers.IntegerField(
        required=False, allow_null=True, default=None, help_text="environment id"
    )
    tool_pattern = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=200
    )
    mode = serializers.ChoiceField(
        choices=AgentMode.choices, required=False, allow_blank=True, default=""
    )
    reason = serializers.CharField(
        max_length=2000, help_text="why: kept in the audit log, shown to runtimes"
    )


# ------------------------------------------------------------- Unleash client API (SDKs)


class ClientRegisterInput(NullMeansAbsentMixin, serializers.Serializer):
    appName = serializers.CharField(max_length=200)
    instanceId = serializers.CharField(max_length=200, required=False, default="unknown")
    sdkVersion = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    strategies = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, default=list, max_length=200
    )
    started = serializers.DateTimeField(required=False, allow_null=True, default=None)
    # Milliseconds; bounded by the column it is kept in (a PostgreSQL integer).
    interval = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=2**31 - 1
    )


class MetricsBucketInput(serializers.Serializer):
    """The bucket's envelope. ``toggles`` is read flag by flag afterwards
    (``validation.parse_metrics_toggles``), so one wrong entry does not cost the others."""

    start = serializers.DateTimeField()
    stop = serializers.DateTimeField()
    toggles = serializers.JSONField(
        required=False,
        allow_null=True,
        default=dict,
        help_text='{flag name: {"yes": n, "no": n, "variants": {variant: n}}}; '
        f"at most {MAX_BUCKET_COUNT:,} per count, {MAX_BUCKET_FLAGS:,} flags",
    )


class ClientMetricsInput(NullMeansAbsentMixin, serializers.Serializer):
    appName = serializers.CharField(max_length=200)
    instanceId = serializers.CharField(max_length=200, required=False, default="unknown")
    bucket = MetricsBucketInput()


class ClientMetricsOutput(serializers.Serializer):
    recorded = serializers.IntegerField(help_text="flags whose counts were added")
    unknown = serializers.ListField(
        child=serializers.CharField(),
        help_text="flag names not in this environment: ignored (at most 100 listed)",
    )
    unknown_count = serializers.IntegerField()
