from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator
from django.db import models
from django.db.models import Q

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1-50 lowercase letters, digits and dashes, starting and ending with a letter or digit.",
)

TRACE_ID_PLACEHOLDER = "{trace_id}"
_trace_link_url = URLValidator(schemes=["http", "https"])


def validate_trace_link_template(value: str) -> None:
    """A trace-link template is an http(s) URL with ``{trace_id}`` where the trace id goes,
    e.g. ``https://tempo.example/trace/{trace_id}``. Raises ValidationError otherwise."""
    if not value:
        return
    if TRACE_ID_PLACEHOLDER not in value:
        raise ValidationError(
            "Put {trace_id} where the trace id goes, e.g. https://tempo.example/trace/{trace_id}."
        )
    try:
        _trace_link_url(value.replace(TRACE_ID_PLACEHOLDER, "0" * 32))
    except ValidationError:
        raise ValidationError(
            "Use an http:// or https:// URL, e.g. https://tempo.example/trace/{trace_id}."
        ) from None


class Tenant(models.Model):
    """A customer or team: the unit of isolation, quotas and permissions."""

    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=120)
    time_zone = models.CharField(max_length=64, default="UTC")
    trace_link_template = models.CharField(
        max_length=500,
        blank=True,
        default="",
        validators=[validate_trace_link_template],
        help_text="where a request record's trace opens: an http(s) URL with {trace_id}, "
        "e.g. https://tempo.example/trace/{trace_id} (Tempo, Jaeger, Langfuse…)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(
        default=1,
        help_text="grows by one with every change: what the edit form and API calls carry as "
        "expected_version (optimistic concurrency)",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    def snapshot(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "name": self.name,
            "time_zone": self.time_zone,
            "trace_link_template": self.trace_link_template,
            "archived": self.is_archived,
        }


class Agent(models.Model):
    """A named deployable agent of a tenant, e.g. ``support-bot``."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="agents")
    slug = models.CharField(max_length=50, validators=[slug_validator])
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(
        default=1,
        help_text="grows by one with every change: what the edit form and API calls carry as "
        "expected_version (optimistic concurrency)",
    )

    class Meta:
        ordering = ["tenant__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="agent_slug_unique_per_tenant"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    def snapshot(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant.slug,
            "slug": self.slug,
            "name": self.name,
            "description": self.description,
            "archived": self.is_archived,
        }


class Environment(models.Model):
    """development → staging → production, ordered by ``position`` for promotion.

    ``revision`` counts every change runtimes of this environment must react to; it only
    ever grows (see ``environment_revision_bump``)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="environments")
    slug = models.CharField(max_length=50, validators=[slug_validator])
    name = models.CharField(max_length=120)
    position = models.PositiveIntegerField(help_text="promotion order: lower comes first")
    is_production = models.BooleanField(
        default=False, help_text="changes here ask for confirmation and a reason"
    )
    revision = models.PositiveBigIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(
        default=1,
        help_text="grows by one with every change: what the edit form and API calls carry as "
        "expected_version (optimistic concurrency)",
    )

    class Meta:
        ordering = ["tenant__name", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "slug"], name="environment_slug_unique_per_tenant"
            ),
            models.UniqueConstraint(
                fields=["tenant", "position"],
                condition=Q(archived_at__isnull=True),
                name="environment_position_unique_per_tenant",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    def snapshot(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant.slug,
            "slug": self.slug,
            "name": self.name,
            "position": self.position,
            "is_production": self.is_production,
            "archived": self.is_archived,
        }
