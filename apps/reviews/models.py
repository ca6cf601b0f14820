"""Review sampling (docs/decisions/0022): a share of each agent's sessions goes to a review
queue, where a person grades them. Judgments on the telemetry facts, so they live above
``apps.telemetry``, which knows nothing of them."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Grade(models.TextChoices):
    GOOD = "good"
    BAD = "bad"
    POLICY_ISSUE = "policy_issue", "policy issue"


class ReviewPolicy(models.Model):
    """How large a share of an agent's sessions lands in its review queue (0 to 1; 0: none).
    Which sessions: those whose ``session_sample_point`` is below the share, so the same
    sessions stay sampled and a larger share only adds sessions."""

    agent = models.OneToOneField("tenancy.Agent", on_delete=models.CASCADE, related_name="+")
    share = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
        help_text="share of sessions to review, 0 to 1 (0.05 = 5 %)",
    )
    version = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return f"review {self.share} of agent {self.agent_id}"

    def snapshot(self) -> dict[str, str]:
        return {"share": str(self.share)}


class ReviewGrade(models.Model):
    """A reviewer's grade of one session of an agent in an environment (one per session; a
    second grade replaces the first, audited with before/after)."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey("tenancy.Agent", on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.CASCADE, related_name="+"
    )
    session_id = models.CharField(max_length=128)
    grade = models.CharField(max_length=16, choices=Grade.choices)
    note = models.TextField(blank=True, max_length=5000)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    graded_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment", "session_id"], name="reviews_grade_one_per_session"
            )
        ]

    def __str__(self) -> str:
        return f"{self.session_id}: {self.grade}"

    def snapshot(self) -> dict[str, str]:
        return {"session_id": self.session_id, "grade": self.grade, "note": self.note}
