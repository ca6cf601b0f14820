"""Human-in-the-loop approvals (docs/approvals.md).

* ``ApprovalQueue``: where a tenant's approval requests wait. Ordered routing rules (agents,
  tool-name globs, risks; empty matches any) pick the queue of a new request; the tenant's
  ``is_default`` queue takes what no rule matches. Each queue has its approvers (a group holding
  the django-guardian object permission ``approvals.decide_approvalqueue`` on it), a timeout
  after which a request expires, an SLA shown as the waiting badge, an optional escalation to
  another queue, and a limit of open requests per session.
* ``ApprovalRequest``: one tool call a runtime holds until a human decides. Its state machine is
  ``TRANSITIONS``: pending -> approved | rejected | expired | cancelled; final states never change.
  ``arguments_sha256`` pins what is approved: the runtime executes only arguments whose canonical
  hash (RFC 8785) is this one.
* ``ApprovalVote``: one approver's approve or reject of one request (critical requests need two
  distinct approvers; one reject decides).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models.functions import Lower

RISKS = ("read", "write", "critical")  # the bundle format's tool risks, weakest first
RISK_LABELS = {"read": "low", "write": "medium", "critical": "critical"}
# Bulk decisions only for what a mistaken click costs little (issue 14: "low risk only").
BULK_RISKS = ("read",)


def risk_rank(risk: str) -> int:
    """0 for read, 1 for write, 2 for critical; unknown risks rank as critical (fail closed)."""
    return RISKS.index(risk) if risk in RISKS else len(RISKS) - 1


class Status(models.TextChoices):
    PENDING = "pending", "Waiting"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


FINAL = frozenset({Status.APPROVED, Status.REJECTED, Status.EXPIRED, Status.CANCELLED})
# The explicit state machine: every change of ``ApprovalRequest.status`` goes through
# ``services.requests._transition``, which refuses what is not listed here.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset(FINAL),
    **{status: frozenset() for status in FINAL},
}
# What the runtime applies: only an approval allows; a rejection, an expiry (the safe default)
# and a cancellation deny.
OUTCOME = {
    Status.PENDING: None,
    Status.APPROVED: "allow",
    Status.REJECTED: "deny",
    Status.EXPIRED: "deny",
    Status.CANCELLED: "deny",
}


class ApprovalQueue(models.Model):
    """A queue of approval requests of one tenant (see the module docstring)."""

    tenant = models.ForeignKey(
        "tenancy.Tenant", on_delete=models.PROTECT, related_name="approval_queues"
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    position = models.PositiveIntegerField(
        default=100, help_text="routing order: lower is tried first"
    )
    is_default = models.BooleanField(
        default=False, help_text="takes every request no other queue's rules match"
    )
    match_agents = models.JSONField(
        default=list, blank=True, help_text="agent slugs; empty matches every agent"
    )
    match_tools = models.JSONField(
        default=list, blank=True, help_text="tool-name globs (fnmatch); empty matches every tool"
    )
    match_risks = models.JSONField(
        default=list, blank=True, help_text="risks (read, write, critical); empty matches any"
    )
    timeout_s = models.PositiveIntegerField(
        default=3600, help_text="a request not decided by then expires (deny)"
    )
    sla_s = models.PositiveIntegerField(
        default=900, help_text="the waiting time the inbox's badge compares with"
    )
    escalate_after_s = models.PositiveIntegerField(null=True, blank=True)
    escalate_to = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    max_open_per_session = models.PositiveIntegerField(
        default=5, help_text="open requests one agent session may have here at once"
    )
    approvers = models.OneToOneField(
        Group,
        on_delete=models.PROTECT,
        related_name="approval_queue",
        help_text="the queue's approver group (holds decide_approvalqueue on this queue)",
    )
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by_label = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["tenant_id", "is_default", "position", "name"]
        permissions = [("decide_approvalqueue", "Decide the approval requests of this queue")]
        constraints = [
            models.UniqueConstraint(
                "tenant", Lower("name"), name="approval_queue_name_unique_per_tenant"
            ),
            models.UniqueConstraint(
                fields=["tenant"],
                condition=models.Q(is_default=True),
                name="approval_queue_one_default_per_tenant",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def snapshot(self) -> dict[str, Any]:
        """The definition as recorded in audit events (before/after)."""
        return {
            "name": self.name,
            "description": self.description,
            "position": self.position,
            "is_default": self.is_default,
            "match_agents": list(self.match_agents),
            "match_tools": list(self.match_tools),
            "match_risks": list(self.match_risks),
            "timeout_s": self.timeout_s,
            "sla_s": self.sla_s,
            "escalate_after_s": self.escalate_after_s,
            "escalate_to": self.escalate_to.name if self.escalate_to is not None else None,
            "max_open_per_session": self.max_open_per_session,
        }


class ApprovalRequest(models.Model):
    """One tool call held by a runtime until a human decides (see the module docstring)."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.PROTECT, related_name="+")
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.PROTECT, related_name="+"
    )
    agent = models.ForeignKey("tenancy.Agent", on_delete=models.PROTECT, related_name="+")
    queue = models.ForeignKey(ApprovalQueue, on_delete=models.PROTECT, related_name="requests")
    # the runtime token that opened it (None once the token is deleted) and the runtime
    # instance id it reported: where the decision's webhook goes
    token = models.ForeignKey(
        "accounts.RuntimeToken", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    runtime_id = models.CharField(max_length=128, blank=True)
    idempotency_key = models.CharField(max_length=128)
    tool = models.CharField(max_length=128)
    arguments = models.JSONField(help_text="as the approver sees them: sensitive fields redacted")
    arguments_sha256 = models.CharField(
        max_length=64, help_text="sha256 (hex) of the RFC 8785 canonical full arguments"
    )
    redacted = models.JSONField(default=list, blank=True, help_text="argument names redacted")
    risk = models.CharField(max_length=8)
    risk_summary = models.JSONField(
        default=list, blank=True, help_text="lines computed by the platform from the contract"
    )
    reason = models.TextField(blank=True, help_text="the agent's stated reason")
    excerpt = models.JSONField(default=list, blank=True)
    bundle_version = models.ForeignKey(
        "bundles.BundleVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    session_id = models.CharField(max_length=128)
    request_id = models.CharField(max_length=128, blank=True)
    rule = models.CharField(max_length=200, blank=True)
    requested_by = models.CharField(max_length=254, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    approvals_required = models.PositiveSmallIntegerField(default=1)
    approvals = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField()
    escalate_at = models.DateTimeField(null=True, blank=True)
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalated_from = models.ForeignKey(
        ApprovalQueue, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by_label = models.CharField(max_length=400, blank=True)
    comment = models.TextField(blank=True, help_text="the deciding comment")
    version = models.PositiveIntegerField(default=1, help_text="bumps on every change")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "idempotency_key"],
                name="approval_request_idempotent_per_environment",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=[status.value for status in Status]),
                name="approval_request_status_known",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="approval_pending_expiry"),
            models.Index(fields=["status", "escalate_at"], name="approval_pending_escalation"),
            models.Index(fields=["queue", "status"], name="approval_queue_status"),
            models.Index(
                fields=["environment", "session_id", "status"], name="approval_session_open"
            ),
            models.Index(fields=["tenant", "tool", "status"], name="approval_tool_history"),
        ]

    def __str__(self) -> str:
        return f"approval #{self.pk}: {self.tool}"

    @property
    def outcome(self) -> str | None:
        return OUTCOME[Status(self.status)]

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    @property
    def risk_label(self) -> str:
        return RISK_LABELS.get(self.risk, self.risk)


class ApprovalVote(models.Model):
    """One approver's decision on one request: approve or reject, with a comment."""

    class Choice(models.TextChoices):
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    user_label = models.CharField(max_length=150)
    choice = models.CharField(max_length=8, choices=Choice.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField()

    tenant_scope = "request__tenant"

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "user"], name="approval_vote_one_per_approver"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_label} {self.choice}d #{self.request_id}"
