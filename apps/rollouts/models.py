from __future__ import annotations

from django.conf import settings
from django.db import models


class Deployment(models.Model):
    """One decision about which bundle version is the stable version of an agent in an
    environment. The newest row per (agent, environment) is what runtimes serve; older rows
    are the history a rollback walks back through. Rows are never edited."""

    class Kind(models.TextChoices):
        DEPLOY = "deploy", "deploy"
        ROLLBACK = "rollback", "rollback"

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
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DEPLOY)
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

    def __str__(self) -> str:
        return f"{self.agent} in {self.environment}: version {self.version_id} ({self.kind})"
