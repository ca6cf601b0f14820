from django.contrib.auth.models import User
from rest_framework import serializers

from controlplane.api import OptionalReasonMixin

from ..roles import Role
from ..selectors import user_role


class UserOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "username", "email", "is_active", "role", "date_joined", "last_login"]
        read_only_fields = fields

    def get_role(self, user: User) -> str | None:
        role = user_role(user)
        return role.value if role else None


class UserCreatedOutput(UserOutput):
    initial_password = serializers.CharField(read_only=True, help_text="shown once")

    class Meta(UserOutput.Meta):
        fields = [*UserOutput.Meta.fields, "initial_password"]
        read_only_fields = fields


class UserCreateInput(OptionalReasonMixin):
    username = serializers.RegexField(r"^[\w.@+-]{1,150}$", max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    role = serializers.ChoiceField(choices=[r.value for r in Role])
    password = serializers.CharField(required=False, write_only=True, min_length=8, max_length=128,
                                     help_text="omit to generate one, returned once")


class UserUpdateInput(OptionalReasonMixin):
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
