"""Bundle versions, the evidence attached to them, promotion gates and the signing-key registry.

A bundle version is an immutable, content-addressed release of one agent: the exact canonical
bytes that were digested and signed are stored, so a runtime can always verify what it gets."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ImmutableError(Exception):
    """Bundle versions and evaluations are never changed or deleted: they are evidence."""


class _ImmutableQuerySet(models.QuerySet[Any]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise ImmutableError(f"{self.model.__name__} rows are immutable: update() is refused")

    def delete(self) -> NoReturn:
        raise ImmutableError(f"{self.model.__name__} rows are immutable: delete() is refused")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableError(f"{self.model.__name__} rows are immutable: bulk_update() is refused")


class _Immutable(models.Model):
    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableError(
                f"{type(self).__name__} rows are immutable: an existing row cannot be saved"
            )
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableError(f"{type(self).__name__} rows are immutable: delete() is refused")


class SourceFormat(models.TextChoices):
    YAML = "yaml", "YAML"
    JSON = "json", "JSON"


class CanonicalForm(models.TextChoices):
    """How a version's canonical bytes were written (docs/decisions/0006-canonical-json-jcs.md).
    Versions signed before RFC 8785 keep the legacy form, so their digests stay true."""

    RFC8785 = "rfc8785", "RFC 8785 (JCS)"
    PYTHON_JSON = "python-json", "legacy: Python json.dumps, sorted and compact"


class BundleVersion(_Immutable):
    agent = models.ForeignKey(
        "tenancy.Agent", on_delete=models.PROTECT, related_name="bundle_versions"
    )
    number = models.PositiveIntegerField(help_text="v1, v2, … per agent")
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="the version this one was made from",
    )
    digest = models.CharField(max_length=64, help_text="sha256 (hex) of the canonical content")
    canonical = models.TextField(help_text="canonical JSON: exactly the bytes digested and signed")
    canonical_form = models.CharField(
        max_length=16,
        choices=CanonicalForm.choices,
        default=CanonicalForm.RFC8785,
        help_text="how `canonical` was serialised; runtimes recompute the digest in this form",
    )
    source = models.TextField(help_text="the file as pushed (YAML or JSON, comments kept)")
    source_format = models.CharField(max_length=4, choices=SourceFormat.choices)
    signature = models.CharField(
        max_length=128, help_text="Ed25519 signature of the canonical bytes, base64"
    )
    signing_key_id = models.CharField(max_length=32)
    message = models.TextField(help_text="why this version exists")
    warnings = models.JSONField(
        default=dict, blank=True, help_text="validation warnings at push time"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    author_label = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)

    objects = _ImmutableQuerySet.as_manager()

    class Meta:
        ordering = ["agent_id", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "number"], name="bundle_version_number_unique_per_agent"
            ),
            # Same content, same version: this also makes concurrent identical pushes safe.
            models.UniqueConstraint(
                fields=["agent", "digest"], name="bundle_version_digest_unique_per_agent"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} v{self.number}"

    @property
    def label(self) -> str:
        return f"v{self.number}"

    @property
    def canonical_bytes(self) -> bytes:
        return self.canonical.encode("utf-8")

    @property
    def content(self) -> dict[str, Any]:
        cached = self.__dict__.get("_content")
        if cached is None:
            cached = json.loads(self.canonical)
            self.__dict__["_content"] = cached
        return cached

    @property
    def size_bytes(self) -> int:
        return len(self.canonical_bytes)

    def snapshot(self) -> dict[str, Any]:
        return {
            "agent": self.agent.slug,
            "number": self.number,
            "digest": self.digest,
            "parent": self.parent.number if self.parent_id and self.parent else None,
            "signing_key_id": self.signing_key_id,
            "message": self.message,
            "size_bytes": self.size_bytes,
        }


class Evaluation(_Immutable):
    """Evidence from CI: how one test suite did against one version."""

    tenant_scope = "version__agent__tenant"  # apps.core.authz.restrict

    version = models.ForeignKey(BundleVersion, on_delete=models.PROTECT, related_name="evaluations")
    suite = models.CharField(max_length=64, help_text="e.g. golden, adversarial")
    passed = models.PositiveIntegerField()
    failed = models.PositiveIntegerField()
    score = models.FloatField(null=True, blank=True)
    report_url = models.URLField(max_length=500, blank=True)
    run_id = models.CharField(
        max_length=200,
        blank=True,
        help_text="CI run identifier; the same run posted twice is kept once",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by_label = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)

    objects = _ImmutableQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "suite", "run_id"],
                condition=~Q(run_id=""),
                name="evaluation_run_unique_per_version_suite",
            ),
        ]
        indexes = [models.Index(fields=["version", "suite", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.suite} on {self.version}: {self.passed}/{self.total}"

    @property
    def total(self) -> int:
        return self.passed + self.failed

    @property
    def pass_rate(self) -> Decimal | None:
        return Decimal(self.passed) / Decimal(self.total) if self.total else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": str(self.version),
            "suite": self.suite,
            "passed": self.passed,
            "failed": self.failed,
            "score": self.score,
            "report_url": self.report_url,
            "run_id": self.run_id,
        }


class PromotionGate(models.Model):
    """What a version must show before it may be promoted into an environment."""

    environment = models.OneToOneField(
        "tenancy.Environment", on_delete=models.PROTECT, related_name="promotion_gate"
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by_label = models.CharField(max_length=150, blank=True)

    def __str__(self) -> str:
        return f"promotion gate of {self.environment}"

    def snapshot(self) -> dict[str, Any]:
        return {
            "environment": self.environment.slug,
            "requirements": [
                {"suite": r.suite, "min_pass_rate": str(r.min_pass_rate)}
                for r in self.requirements.order_by("suite")
            ],
        }


class GateRequirement(models.Model):
    gate = models.ForeignKey(PromotionGate, on_delete=models.CASCADE, related_name="requirements")
    suite = models.CharField(max_length=64)
    min_pass_rate = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
        help_text="0-1: the share of the suite's cases that must pass",
    )

    class Meta:
        ordering = ["suite"]
        constraints = [
            models.UniqueConstraint(fields=["gate", "suite"], name="gate_requirement_suite_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.suite} ≥ {self.min_pass_rate}"


class SigningKey(models.Model):
    """A public key the control plane signs (or signed) with. Retired keys stay published so
    runtimes can still verify what was signed before a rotation."""

    kid = models.CharField(max_length=32, unique=True)
    algorithm = models.CharField(max_length=16, default="Ed25519")
    public_key = models.CharField(max_length=64, help_text="raw 32-byte public key, base64")
    active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=Q(active=True), name="one_active_signing_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} key {self.kid}"

    def snapshot(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "algorithm": self.algorithm,
            "public_key": self.public_key,
            "active": self.active,
        }
