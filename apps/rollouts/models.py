from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q


class Deployment(models.Model):
    """One decision about which bundle version is the stable version of an agent in an
    environment: the release history of that (agent, environment) pair, one row per change.

    The history is an explicit state machine (``TRANSITIONS``): each row is born ``live``
    and leaves that state exactly once, when the next row replaces it: ``superseded`` by a
    deploy (it served until someone chose to move on: a known-good version) or
    ``rolled_back`` by a rollback (someone judged it bad: never a rollback target again).
    At most one row per pair is ``live`` (a database constraint) and that row is what
    runtimes serve. ``sequence`` numbers the pair's rows 1, 2, 3…: it is the version the
    deploy and rollback forms carry for optimistic concurrency."""

    class Kind(models.TextChoices):
        DEPLOY = "deploy", "deploy"
        ROLLBACK = "rollback", "rollback"

    class State(models.TextChoices):
        LIVE = "live", "live"
        SUPERSEDED = "superseded", "superseded"
        ROLLED_BACK = "rolled_back", "rolled back"

    # How a live row ends, per kind of the change that replaces it. Nothing else moves a row.
    TRANSITIONS: ClassVar[dict[str, tuple[str, str]]] = {
        Kind.DEPLOY: (State.LIVE, State.SUPERSEDED),
        Kind.ROLLBACK: (State.LIVE, State.ROLLED_BACK),
    }

    agent = models.ForeignKey("tenancy.Agent", on_delete=models.PROTECT, related_name="deployments")
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.PROTECT, related_name="deployments"
    )
    version = models.ForeignKey(
        "bundles.BundleVersion", on_delete=models.PROTECT, related_name="deployments"
    )
    previous = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the deployment this one replaced",
    )
    restores = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="for a rollback: the known-good deployment whose version it brings back",
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DEPLOY)
    state = models.CharField(max_length=12, choices=State.choices, default=State.LIVE)
    sequence = models.PositiveIntegerField(
        help_text="1, 2, 3… per agent and environment: the release history's version"
    )
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deployed_by_label = models.CharField(max_length=150)
    reason = models.TextField()
    revision = models.PositiveBigIntegerField(help_text="the environment revision that carries it")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["agent", "environment", "-id"])]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment", "sequence"],
                name="deployment_sequence_unique_per_agent_environment",
            ),
            models.UniqueConstraint(
                fields=["agent", "environment"],
                condition=Q(state="live"),
                name="deployment_one_live_per_agent_environment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent} in {self.environment}: version {self.version_id} ({self.kind})"
