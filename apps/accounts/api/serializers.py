from django.contrib.auth.models import User
from rest_framework import serializers

from apps.core.api import ExpectedVersionMixin, OptionalReasonMixin
from apps.core.roles import Role

from ..models import RuntimeToken
from ..selectors import user_role, user_version


class UserOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    version = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "is_active",
            "role",
            "version",
            "date_joined",
            "last_login",
        ]
        read_only_fields = fields

    def get_role(self, user: User) -> str | None:
        role = user_role(user)
        return role.value if role else None

    def get_version(self, user: User) -> int:
        """What to send as ``expected_version`` (or ``If-Match``) on a change."""
        return user_version(user)


class PasswordResetOutput(serializers.Serializer):
    """The answer to an Admin's password reset: the one-time password, returned this once."""

    one_time_password = serializers.CharField(
        read_only=True,
        help_text="shown once; the user must change it at the next login in the browser",
    )


class UserCreatedOutput(UserOutput):
    initial_password = serializers.CharField(read_only=True, help_text="shown once")

    class Meta(UserOutput.Meta):
        fields = [*UserOutput.Meta.fields, "initial_password"]
        read_only_fields = fields


class UserCreateInput(OptionalReasonMixin):
    username = serializers.RegexField(r"^[\w.@+-]{1,150}$", max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    role = serializers.ChoiceField(choices=[r.value for r in Role])
    password = serializers.CharField(
        required=False,
        write_only=True,
        min_length=8,
        max_length=128,
        help_text="omit to generate one, returned once; either way the user must change it "
        "at the first login in the browser",
    )
    tenants = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        default=list,
        max_length=1000,
        help_text="ids of the tenants the new user sees (each grant is audited)",
    )


class UserUpdateInput(ExpectedVersionMixin, OptionalReasonMixin):
    email = serializers.EmailField(required=False, allow_blank=True)
    role = serializers.ChoiceField(choices=[r.value for r in Role], required=False)
    is_active = serializers.BooleanField(required=False)


class TenantGrantInput(OptionalReasonMixin):
    tenant = serializers.IntegerField(help_text="tenant id")


class TokenObtainInput(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(write_only=True)


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()


class RuntimeTokenOutput(serializers.ModelSerializer):
    tenant_slug = serializers.CharField(source="tenant.slug", read_only=True)
    environment_slug = serializers.CharField(source="environment.slug", read_only=True)
    agent_slug = serializers.CharField(source="agent.slug", read_only=True, default=None)
    status = serializers.CharField(read_only=True)

    class Meta:
        model = RuntimeToken
        fields = [
            "id",
            "name",
            "tenant",
            "tenant_slug",
            "environment",
            "environment_slug",
            "agent",
            "agent_slug",
            "display_prefix",
            "status",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = fields


class RuntimeTokenCreatedOutput(RuntimeTokenOutput):
    token = serializers.CharField(read_only=True, help_text="shown once; stored only as a hash")

    class Meta(RuntimeTokenOutput.Meta):
        fields = [*RuntimeTokenOutput.Meta.fields, "token"]
        read_only_fields = fields


class RuntimeTokenCreateInput(OptionalReasonMixin):
    environment = serializers.IntegerField(help_text="environment id; the tenant follows from it")
    agent = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="agent id, to limit the token to one agent",
    )
    name = serializers.CharField(max_length=120)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
