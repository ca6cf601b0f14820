"""Input and output shapes of the operator approvals API (``/api/v1/approvals/``,
``/api/v1/approval-queues/``). Inputs check only JSON types; what a queue may be is
``services.queue_validate``'s, whose field errors reach the client under the same keys."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.core.api import ExpectedVersionMixin, OptionalReasonMixin

from ..models import RISKS, ApprovalQueue, ApprovalRequest, ApprovalVote


class VoteOutput(serializers.ModelSerializer):
    user = serializers.CharField(source="user_label")

    class Meta:
        model = ApprovalVote
        fields = ["user", "choice", "comment", "created_at"]


class ApprovalOutput(serializers.ModelSerializer):
    """A request as approvers read it: arguments redacted as the contract says."""

    tenant = serializers.CharField(source="tenant.slug")
    environment = serializers.CharField(source="environment.slug")
    agent = serializers.CharField(source="agent.slug")
    queue = serializers.CharField(source="queue.name")
    queue_id = serializers.IntegerField()
    outcome = serializers.CharField(allow_null=True)
    risk_label = serializers.CharField()
    bundle_version = serializers.IntegerField(
        source="bundle_version.number", default=None, read_only=True
    )
    escalated_from = serializers.CharField(source="escalated_from.name", default=None)
    decided_by = serializers.SerializerMethodField()
    votes = VoteOutput(many=True, read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "tenant",
            "environment",
            "agent",
            "queue",
            "queue_id",
            "status",
            "outcome",
            "tool",
            "arguments",
            "arguments_sha256",
            "redacted",
            "risk",
            "risk_label",
            "risk_summary",
            "reason",
            "excerpt",
            "bundle_version",
            "session_id",
            "request_id",
            "rule",
            "requested_by",
            "approvals_required",
            "approvals",
            "created_at",
            "expires_at",
            "escalated_at",
            "escalated_from",
            "decided_at",
            "decided_by",
            "comment",
            "votes",
            "version",
        ]

    def get_decided_by(self, request: ApprovalRequest) -> list[str]:
        return [label for label in request.decided_by_label.split(",") if label]


class DecideInput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["approve", "reject"])
    comment = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        default="",
        trim_whitespace=False,
        help_text="required to reject: the agent and its user read it",
    )


class BulkDecideInput(DecideInput):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**62),
        min_length=1,
        max_length=100,
        help_text="low-risk requests only; others are refused one by one",
    )


class BulkDecideOutput(serializers.Serializer):
    decided = serializers.ListField(child=serializers.IntegerField())
    refused = serializers.DictField(child=serializers.CharField())


class AlreadyDecidedOutput(serializers.Serializer):
    """409: decided meanwhile (or expired, cancelled, or already approved by you)."""

    detail = serializers.CharField()
    errors = serializers.DictField()  # type: ignore[assignment]
    status = serializers.CharField()
    decided_by = serializers.ListField(child=serializers.CharField())
    decided_at = serializers.DateTimeField(allow_null=True)


class QueueOutput(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant.slug")
    escalate_to = serializers.CharField(source="escalate_to.name", default=None)
    approvers = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalQueue
        fields = [
            "id",
            "tenant",
            "name",
            "description",
            "position",
            "is_default",
            "match_agents",
            "match_tools",
            "match_risks",
            "timeout_s",
            "sla_s",
            "escalate_after_s",
            "escalate_to",
            "max_open_per_session",
            "approvers",
            "version",
            "updated_at",
            "updated_by_label",
        ]

    def get_approvers(self, queue: ApprovalQueue) -> list[str]:
        return sorted(user.get_username() for user in queue.approvers.user_set.all())


class QueueInput(ExpectedVersionMixin, OptionalReasonMixin):
    name = serializers.CharField(max_length=200, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    position = serializers.IntegerField(required=False, min_value=0, max_value=10_000)
    match_agents = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=50
    )
    match_tools = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=50
    )
    match_risks = serializers.ListField(
        child=serializers.ChoiceField(choices=list(RISKS)), required=False, max_length=3
    )
    timeout_s = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    sla_s = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    escalate_after_s = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2**31 - 1
    )
    escalate_to = serializers.CharField(
        required=False, allow_null=True, max_length=200, help_text="another queue's name"
    )
    max_open_per_session = serializers.IntegerField(
        required=False, min_value=0, max_value=2**31 - 1
    )
    approvers = serializers.ListField(
        child=serializers.CharField(max_length=150),
        required=False,
        max_length=500,
        help_text="usernames; omitted on a change: unchanged",
    )


class QueueCreateInput(QueueInput):
    tenant = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="tenant id")


def defined(data: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {name: data[name] for name in names if name in data}
