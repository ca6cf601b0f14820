"""Accounts use Django's User and Group (roles) and guardian's object permissions (tenant
grants). The one table of their own is the runtime token: how a data-plane runtime, never a
person, authenticates. (Being a models module also makes the app take part in migrate, whose
post-migrate step keeps the role groups in line with ``roles.ROLE_PERMISSIONS``.)"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

RUNTIME_TOKEN_PREFIX = "cprt_"  # noqa: S105 - a public prefix that makes tokens recognisable, not a secret


def hash_runtime_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class RuntimeToken(models.Model):
    """Scoped to one tenant and environment, optionally one agent. Stored hashed; shown once."""

    tenant = models.ForeignKey(
        "tenancy.Tenant", on_delete=models.PROTECT, related_name="runtime_tokens"
    )
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.PROTECT, related_name="runtime_tokens"
    )
    agent = models.ForeignKey(
        "tenancy.Agent",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="runtime_tokens",
    )
    name = models.CharField(max_length=120)
    token_hash = models.CharField(max_length=64, unique=True)
    display_prefix = models.CharField(max_length=16, help_text="first characters, to recognise it")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix}…)"

    def is_usable(self, now: Any = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tenant": self.tenant.slug,
            "environment": self.environment.slug,
            "agent": self.agent.slug if self.agent else None,
            "prefix": self.display_prefix,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "status": self.status,
        }
