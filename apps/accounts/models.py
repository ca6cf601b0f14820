"""Accounts use Django's User and Group (roles) and guardian's object permissions (tenant
grants). Their own tables hold tokens, both stored only as sha256 hashes and shown once: the
runtime token (how a data-plane runtime, never a person, authenticates) and a person's API
token for scripts."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

# Re-exported: the token rows' callers spell them from here; the one implementation is the
# kernel's (the fast path checks tokens with it before Django is involved).
from apps.core.tokens import API_TOKEN_PREFIX as API_TOKEN_PREFIX
from apps.core.tokens import RUNTIME_TOKEN_PREFIX as RUNTIME_TOKEN_PREFIX
from apps.core.tokens import hash_token as hash_token

hash_runtime_token = hash_token


class ApiToken(models.Model):
    """A person's API token for scripts, sent as ``Authorization: Token <key>``: one per user,
    replaced when a new one is issued, deleted when the user is deactivated. Stored hashed;
    the key is shown once."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_token"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    display_prefix = models.CharField(max_length=16, help_text="first characters, to recognise it")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"API token of {self.user} ({self.display_prefix}…)"


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


class UserVersion(models.Model):
    """The ``version`` of a user's editable state (email, role, active), which Django's own
    ``User`` table has no column for: grows by one with every ``user_update`` that changes
    something, compared with the ``expected_version`` an edit form or API call carries
    (optimistic concurrency, docs/decisions/0007). No row yet means version 1."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="edit_version",
    )
    version = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.user} v{self.version}"


class PasswordChangeRequired(models.Model):
    """A user whose password someone else chose: the initial one of a new user, or the
    one-time password of an Admin's reset. While the row exists, every page of the UI sends
    the user to the password change page (``PasswordChangeRequiredMiddleware``); changing the
    password deletes it. API tokens are not affected."""

    INITIAL, RESET = "initial", "reset"
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="password_change_required",
    )
    cause = models.CharField(
        max_length=16, choices=[(INITIAL, "initial password"), (RESET, "reset by an Admin")]
    )
    since = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} must change the {self.get_cause_display()}"
