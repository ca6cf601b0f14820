from rest_framework import serializers

from apps.core.api import ExpectedVersionMixin, OptionalReasonMixin, ReasonSerializer

from ..models import Agent, Environment, Tenant, slug_validator


class TenantOutput(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = [
            "id",
            "slug",
            "name",
            "time_zone",
            "trace_link_template",
            "version",
            "created_at",
            "archived_at",
        ]
        read_only_fields = fields


class TenantCreateInput(OptionalReasonMixin):
    slug = serializers.CharField(max_length=50, validators=[slug_validator])
    name = serializers.CharField(max_length=120)
    time_zone = serializers.CharField(max_length=64, default="UTC")
    with_default_environments = serializers.BooleanField(
        default=True, help_text="also create development, staging and production"
    )


class TenantUpdateInput(ExpectedVersionMixin, OptionalReasonMixin):
    name = serializers.CharField(max_length=120, required=False)
    time_zone = serializers.CharField(max_length=64, required=False)
    trace_link_template = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        help_text="an http(s) URL with {trace_id}, e.g. https://tempo.example/trace/{trace_id}",
    )


class AgentOutput(serializers.ModelSerializer):
    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True)

    class Meta:
        model = Agent
        fields = [
            "id",
            "tenant",
            "tenant_slug",
            "slug",
            "name",
            "description",
            "version",
            "created_at",
            "archived_at",
        ]
        read_only_fields = fields


class AgentCreateInput(OptionalReasonMixin):
    tenant = serializers.IntegerField(help_text="tenant id")
    slug = serializers.CharField(max_length=50, validators=[slug_validator])
    name = serializers.CharField(max_length=120)
    description = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=5000
    )


class AgentUpdateInput(ExpectedVersionMixin, OptionalReasonMixin):
    name = serializers.CharField(max_length=120, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class EnvironmentOutput(serializers.ModelSerializer):
    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True)

    class Meta:
        model = Environment
        fields = [
            "id",
            "tenant",
            "tenant_slug",
            "slug",
            "name",
            "position",
            "is_production",
            "revision",
            "version",
            "created_at",
            "archived_at",
        ]
        read_only_fields = fields


class EnvironmentCreateInput(OptionalReasonMixin):
    tenant = serializers.IntegerField(help_text="tenant id")
    slug = serializers.CharField(max_length=50, validators=[slug_validator])
    name = serializers.CharField(max_length=120)
    is_production = serializers.BooleanField(default=False)
    position = serializers.IntegerField(required=False, min_value=0, help_text="omit to go last")


class EnvironmentUpdateInput(ExpectedVersionMixin, OptionalReasonMixin):
    name = serializers.CharField(max_length=120, required=False)
    is_production = serializers.BooleanField(required=False)


class EnvironmentMoveInput(ExpectedVersionMixin, OptionalReasonMixin):
    direction = serializers.ChoiceField(choices=["up", "down"])


class ArchiveInput(ExpectedVersionMixin, ReasonSerializer):
    """Archive or restore: a reason, and optionally the ``version`` read (or ``If-Match``)."""
