"""Flags (the Unleash model, per environment), segments, kill switches, and what Unleash
SDKs report back: registered instances and per-hour evaluation counts.

A flag's strategies, variants and dependencies are stored as the validated, normalised
Unleash documents they are served as (see the ``validation`` package): what an operator saves is
byte-for-byte what SDKs evaluate, and an Unleash import round-trips without translation."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Coalesce


class FlagType(models.TextChoices):
    RELEASE = "release", "Release"
    EXPERIMENT = "experiment", "Experiment"
    OPERATIONAL = "operational", "Operational"
    KILL_SWITCH = "kill-switch", "Kill switch"
    PERMISSION = "permission", "Permission"


class Flag(models.Model):
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.PROTECT, related_name="flags"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    type = models.CharField(max_length=20, choices=FlagType.choices, default=FlagType.RELEASE)
    enabled = models.BooleanField(default=False)
    impression_data = models.BooleanField(default=False)
    project = models.CharField(max_length=100, default="default")
    stale = models.BooleanField(default=False)
    strategies = models.JSONField(default=list, blank=True)
    variants = models.JSONField(default=list, blank=True)
    dependencies = models.JSONField(default=list, blank=True)
    # What the last import reported about this flag and stored anyway (``[{"where": "strategy
    # 1 (default), constraint 2 (userId REGEX), value", "path": …, "message": …}]``): shown
    # on the flag until an edit, which only saves what the SDKs evaluate, clears it.
    import_warnings = models.JSONField(default=list, blank=True)
    version = models.PositiveIntegerField(
        default=1,
        help_text="grows by one with every change: what edit and toggle forms and API calls "
        "carry as expected_version (optimistic concurrency)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "name"], name="flag_name_unique_per_environment"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def snapshot(self) -> dict[str, Any]:
        return {
            "environment": self.environment_id,
            "name": self.name,
            "description": self.description,
            "type": self.type,
            "enabled": self.enabled,
            "impressionData": self.impression_data,
            "project": self.project,
            "stale": self.stale,
            "strategies": self.strategies,
            "variants": self.variants,
            "dependencies": self.dependencies,
        }


class Segment(models.Model):
    """A named, reusable list of constraints that strategies reference by ``segment_id``
    (Unleash's segment id, kept on import so references stay valid)."""

    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.PROTECT, related_name="segments"
    )
    segment_id = models.PositiveIntegerField()
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    constraints = models.JSONField(default=list, blank=True)
    version = models.PositiveIntegerField(
        default=1,
        help_text="grows by one with every change: what the edit form and API calls carry as "
        "expected_version (optimistic concurrency)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["segment_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "segment_id"], name="segment_id_unique_per_environment"
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"segment {self.segment_id}"

    def snapshot(self) -> dict[str, Any]:
        return {
            "environment": self.environment_id,
            "id": self.segment_id,
            "name": self.name,
            "description": self.description,
            "constraints": self.constraints,
        }


class KillSwitchKind(models.TextChoices):
    TOOL_DISABLED = "tool_disabled", "Tool disabled"
    AGENT_MODE = "agent_mode", "Agent mode forced"
    AGENT_STOPPED = "agent_stopped", "Agent stopped"


class KillSwitchScope(models.TextChoices):
    GLOBAL = "global", "Everywhere"
    TENANT = "tenant", "Tenant"
    AGENT = "agent", "Agent"
    ENVIRONMENT = "environment", "Environment"


class AgentMode(models.TextChoices):
    READ_ONLY = "read_only", "Read-only"
    DRAFT_ONLY = "draft_only", "Draft-only"


class KillSwitch(models.Model):
    """An instant stop that stays engaged until someone releases it, explicitly.

    ``engaged_revisions`` maps each affected environment id to the revision that first
    carries the switch, so propagation to runtimes can be measured against it;
    ``released_revisions`` does the same for the release."""

    # apps.core.authz.restrict: a global switch (no tenant) concerns, and is seen by, everyone
    tenant_scope = "tenant"
    tenant_scope_null_is_global = True

    kind = models.CharField(max_length=20, choices=KillSwitchKind.choices)
    scope = models.CharField(max_length=20, choices=KillSwitchScope.choices)
    tenant = models.ForeignKey(
        "tenancy.Tenant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="kill_switches",
    )
    agent = models.ForeignKey(
        "tenancy.Agent",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="kill_switches",
    )
    environment = models.ForeignKey(
        "tenancy.Environment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="kill_switches",
    )
    tool_pattern = models.CharField(
        max_length=200, blank=True, help_text="tool name or glob pattern (tool_disabled only)"
    )
    mode = models.CharField(
        max_length=20,
        choices=AgentMode.choices,
        blank=True,
        help_text="forced mode (agent_mode only)",
    )
    reason = models.TextField()
    engaged_at = models.DateTimeField()
    engaged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    engaged_by_label = models.CharField(max_length=150)
    engaged_revisions = models.JSONField(default=dict, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    released_by_label = models.CharField(max_length=150, blank=True)
    release_reason = models.TextField(blank=True)
    released_revisions = models.JSONField(default=dict, blank=True)
    version = models.PositiveIntegerField(
        default=1,
        help_text="1 while engaged, 2 once released: what a release carries as "
        "expected_version (optimistic concurrency)",
    )

    class Meta:
        ordering = ["-engaged_at", "-id"]
        indexes = [models.Index(fields=["released_at", "tenant"])]
        constraints = [
            # One engaged switch per identity. The targets are nullable (a global switch has
            # no tenant) and NULLs never collide in a unique index, so they are compared as
            # 0: five concurrent identical engages leave one switch, whatever the scope.
            models.UniqueConstraint(
                "kind",
                "scope",
                Coalesce("tenant", Value(0)),
                Coalesce("agent", Value(0)),
                Coalesce("environment", Value(0)),
                "tool_pattern",
                "mode",
                condition=Q(released_at__isnull=True),
                name="kill_switch_one_engaged_per_identity",
                violation_error_message="The same kill switch is already engaged.",
            ),
            models.CheckConstraint(
                name="kill_switch_scope_matches_targets",
                condition=(
                    Q(
                        scope="global",
                        tenant__isnull=True,
                        agent__isnull=True,
                        environment__isnull=True,
                    )
                    | Q(
                        scope="tenant",
                        tenant__isnull=False,
                        agent__isnull=True,
                        environment__isnull=True,
                    )
                    | Q(
                        scope="agent",
                        tenant__isnull=False,
                        agent__isnull=False,
                        environment__isnull=True,
                    )
                    | Q(scope="environment", tenant__isnull=False, environment__isnull=False)
                ),
            ),
            models.CheckConstraint(
                name="kill_switch_kind_fields",
                condition=(
                    Q(kind="tool_disabled", mode="") & ~Q(tool_pattern="")
                    | Q(kind="agent_mode", tool_pattern="", agent__isnull=False) & ~Q(mode="")
                    | Q(kind="agent_stopped", tool_pattern="", mode="", agent__isnull=False)
                ),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.target_label}"

    @property
    def is_engaged(self) -> bool:
        return self.released_at is None

    @property
    def target_label(self) -> str:
        agent = self.agent.slug if self.agent else "?"
        what = {
            KillSwitchKind.TOOL_DISABLED: f"tool {self.tool_pattern}",
            KillSwitchKind.AGENT_MODE: f"{agent} {self.get_mode_display().lower()}",
            KillSwitchKind.AGENT_STOPPED: f"{agent} stopped",
        }[KillSwitchKind(self.kind)]
        return f"{what} ({self.scope_label})"

    @property
    def scope_label(self) -> str:
        tenant = self.tenant.slug if self.tenant else "?"
        if self.scope == KillSwitchScope.GLOBAL:
            return "every tenant, every environment"
        if self.scope == KillSwitchScope.TENANT:
            return f"every environment of {tenant}"
        if self.scope == KillSwitchScope.AGENT:
            return f"{self.agent.slug if self.agent else '?'} in every environment"
        agent = f"{self.agent.slug} in " if self.agent else ""
        return f"{agent}{self.environment.slug if self.environment else '?'} of {tenant}"

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "scope": self.scope,
            "tenant": self.tenant.slug if self.tenant else None,
            "agent": self.agent.slug if self.agent else None,
            "environment": self.environment.slug if self.environment else None,
            "tool_pattern": self.tool_pattern or None,
            "mode": self.mode or None,
            "engaged_at": self.engaged_at.isoformat(),
            "engaged_revisions": self.engaged_revisions,
            "released_at": self.released_at.isoformat() if self.released_at else None,
            "released_revisions": self.released_revisions,
        }


class SdkInstance(models.Model):
    """An Unleash SDK instance that registered (``POST /api/client/register``) or sent
    metrics, per environment."""

    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.CASCADE, related_name="sdk_instances"
    )
    app_name = models.CharField(max_length=200)
    instance_id = models.CharField(max_length=200)
    sdk_version = models.CharField(max_length=100, blank=True)
    strategies = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    interval_ms = models.PositiveIntegerField(null=True, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    token = models.ForeignKey(
        "accounts.RuntimeToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["app_name", "instance_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "app_name", "instance_id"],
                name="sdk_instance_unique_per_environment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.app_name}/{self.instance_id}"


class FlagUsage(models.Model):
    """Evaluation counts SDKs reported for one flag name, app and hour. Incremented by an
    upsert, never read-modify-write (see ``services.usage``)."""

    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.CASCADE, related_name="+"
    )
    flag_name = models.CharField(max_length=200)
    app_name = models.CharField(max_length=200)
    hour = models.DateTimeField()
    yes = models.PositiveBigIntegerField(default=0)
    no = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["hour"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "flag_name", "app_name", "hour"],
                name="flag_usage_unique_bucket",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.flag_name} {self.hour:%Y-%m-%d %H}h: {self.yes} yes / {self.no} no"


class FlagVariantUsage(models.Model):
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.CASCADE, related_name="+"
    )
    flag_name = models.CharField(max_length=200)
    app_name = models.CharField(max_length=200)
    hour = models.DateTimeField()
    variant = models.CharField(max_length=200)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["hour"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "flag_name", "app_name", "hour", "variant"],
                name="flag_variant_usage_unique_bucket",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.flag_name}:{self.variant} {self.hour:%Y-%m-%d %H}h: {self.count}"
