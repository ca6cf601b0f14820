from __future__ import annotations

from rest_framework import serializers

from apps.core.api import ReasonSerializer


class ReleaseOutput(serializers.Serializer):
    """The stable version of one agent in one environment, and where a rollback would go.
    ``version`` is the release history's version (the live deployment's sequence, 0 when
    nothing was deployed): send it back as ``expected_version`` to deploy or roll back."""

    environment = serializers.IntegerField()
    environment_slug = serializers.CharField()
    version = serializers.IntegerField()
    stable_version = serializers.IntegerField(
        allow_null=True, help_text="bundle version number (N of vN) runtimes serve"
    )
    kind = serializers.CharField(allow_null=True, help_text="deploy or rollback")
    deployed_by = serializers.CharField(allow_null=True)
    deployed_at = serializers.DateTimeField(allow_null=True)
    revision = serializers.IntegerField(allow_null=True)
    rollback_target = serializers.IntegerField(
        allow_null=True,
        help_text="the last known-good version number a rollback would bring back; null "
        "when a rollback would be refused (see rollback_refusal)",
    )
    rollback_refusal = serializers.CharField(allow_blank=True)


class _Expected(serializers.Serializer):
    expected_version = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text="Required (here or as If-Match): the release `version` you read; 409 if "
        "the stable version changed since.",
    )


class DeployInput(_Expected, ReasonSerializer):
    version = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="bundle version number to make stable"
    )


class RollbackInput(_Expected, ReasonSerializer):
    """A reason and the release version read."""
