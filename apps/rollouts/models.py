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
    gate_override = models.TextField(
        blank=True,
        default="",
        help_text="why an Admin deployed past a promotion gate that was not met ('' if none)",
    )
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


def _default_plan() -> dict[str, object]:
    from .plans import default_plan

    return default_plan()


class RolloutPlan(models.Model):
    """The plan rollouts of every agent in one environment follow (``apps.rollouts.plans``
    describes the document). An environment without a row uses the default plan."""

    environment = models.OneToOneField(
        "tenancy.Environment", on_delete=models.PROTECT, related_name="rollout_plan"
    )
    document = models.JSONField(default=_default_plan)
    version = models.PositiveIntegerField(
        default=1, help_text="grows with every edit: the edit form's expected_version"
    )
    updated_by_label = models.CharField(max_length=150, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"rollout plan of {self.environment}"


class Rollout(models.Model):
    """Moving one agent in one environment from its stable version (``baseline``) to a
    ``candidate``: shadow → canary steps → completed, or paused, aborted, rolled back.

    The state machine is ``TRANSITIONS`` — (state, event) → the states the event may lead
    to; ``apps.rollouts.services.rollout_transition`` is its only mover. At most one rollout
    per agent and environment is active (a database constraint). ``sequence`` grows with
    every transition: what buttons and API calls carry as ``expected_version``."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        SHADOW = "shadow", "shadow"
        CANARY = "canary", "canary"
        PAUSED = "paused", "paused"
        COMPLETED = "completed", "completed"
        ABORTED = "aborted", "aborted"
        ROLLED_BACK = "rolled_back", "rolled back"

    class Event(models.TextChoices):
        START = "start", "start"
        ADVANCE = "advance", "advance"
        PAUSE = "pause", "pause"
        RESUME = "resume", "resume"
        COMPLETE = "complete", "complete"
        ABORT = "abort", "abort"
        ROLLBACK = "rollback", "roll back"
        # back one canary step, and paused there: less traffic on a suspect candidate while
        # someone investigates, short of rolling it back (Argo Rollouts' setWeight down)
        SHRINK = "shrink", "shrink"

    ACTIVE: ClassVar[tuple[str, ...]] = (
        State.PENDING,
        State.SHADOW,
        State.CANARY,
        State.PAUSED,
    )
    # Where the candidate takes live traffic or shadows it: what the snapshot carries.
    SERVING: ClassVar[tuple[str, ...]] = (State.SHADOW, State.CANARY, State.PAUSED)
    TRANSITIONS: ClassVar[dict[tuple[str, str], frozenset[str]]] = {
        (State.PENDING, Event.START): frozenset({State.SHADOW, State.CANARY}),
        (State.PENDING, Event.ABORT): frozenset({State.ABORTED}),
        (State.PENDING, Event.ROLLBACK): frozenset({State.ROLLED_BACK}),
        (State.SHADOW, Event.ADVANCE): frozenset({State.CANARY}),
        (State.SHADOW, Event.PAUSE): frozenset({State.PAUSED}),
        (State.SHADOW, Event.ABORT): frozenset({State.ABORTED}),
        (State.SHADOW, Event.ROLLBACK): frozenset({State.ROLLED_BACK}),
        (State.CANARY, Event.ADVANCE): frozenset({State.CANARY}),
        (State.CANARY, Event.COMPLETE): frozenset({State.COMPLETED}),
        (State.CANARY, Event.PAUSE): frozenset({State.PAUSED}),
        (State.CANARY, Event.ABORT): frozenset({State.ABORTED}),
        (State.CANARY, Event.ROLLBACK): frozenset({State.ROLLED_BACK}),
        (State.CANARY, Event.SHRINK): frozenset({State.PAUSED}),
        (State.PAUSED, Event.RESUME): frozenset({State.SHADOW, State.CANARY}),
        (State.PAUSED, Event.ABORT): frozenset({State.ABORTED}),
        (State.PAUSED, Event.ROLLBACK): frozenset({State.ROLLED_BACK}),
        (State.PAUSED, Event.COMPLETE): frozenset({State.COMPLETED}),
        (State.PAUSED, Event.SHRINK): frozenset({State.PAUSED}),
    }

    agent = models.ForeignKey("tenancy.Agent", on_delete=models.PROTECT, related_name="rollouts")
    environment = models.ForeignKey(
        "tenancy.Environment", on_delete=models.PROTECT, related_name="rollouts"
    )
    candidate = models.ForeignKey(
        "bundles.BundleVersion", on_delete=models.PROTECT, related_name="rollouts"
    )
    baseline = models.ForeignKey(
        "bundles.BundleVersion",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the stable version at the start: what the candidate is judged against",
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    step_index = models.IntegerField(
        default=-1, help_text="the canary step (0, 1, …) in the plan; -1 before the canary"
    )
    paused_from = models.CharField(max_length=12, blank=True, default="")
    plan = models.JSONField(help_text="the plan as it was when the rollout started")
    stickiness = models.CharField(max_length=40, default="sessionId")
    group_id = models.CharField(
        max_length=200, help_text="the flexibleRollout group id: kept by a restarted rollout"
    )
    constraints = models.JSONField(
        default=list,
        blank=True,
        help_text="Unleash constraints narrowing who may get the candidate",
    )
    sequence = models.PositiveIntegerField(default=1)
    consecutive_failures = models.PositiveIntegerField(default=0)
    step_started_at = models.DateTimeField(null=True, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_by_label = models.CharField(max_length=150)
    reason = models.TextField()
    gate_override = models.TextField(
        blank=True, default="", help_text="why an Admin started it past a failing gate"
    )
    outcome = models.TextField(blank=True, default="", help_text="why it ended as it did")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_analysed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [
            ("override_rollout_gate", "Deploy or start a rollout past a failing promotion gate")
        ]
        indexes = [models.Index(fields=["agent", "environment", "-id"])]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment"],
                condition=Q(state__in=["pending", "shadow", "canary", "paused"]),
                name="rollout_one_active_per_agent_environment",
            ),
        ]

    def __str__(self) -> str:
        return f"rollout #{self.pk} of {self.agent} to version {self.candidate_id}"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE

    @property
    def phase(self) -> str:
        """The phase the candidate serves in: the state, or for a paused rollout the state it
        paused in (pausing keeps the split)."""
        return (
            (self.paused_from or self.State.CANARY)
            if self.state == self.State.PAUSED
            else self.state
        )

    @property
    def shrink_to(self) -> float | None:
        """The share of sessions (0 to 100) a shrink takes the canary back to: the previous
        step's. None when the rollout serves no canary step past its first (in the canary, or
        paused there): nothing smaller the plan already took. The one rule for the service,
        the rollout page and the incident panel."""
        steps = self.plan["steps"]
        in_canary = self.state == self.State.CANARY or (
            self.state == self.State.PAUSED and self.paused_from == self.State.CANARY
        )
        if not in_canary or not 0 < self.step_index < len(steps):
            return None
        return float(steps[self.step_index - 1]["percentage"])

    @property
    def percentage(self) -> float:
        """The share of live traffic (sessions) the candidate serves now, 0 to 100."""
        if self.state == self.State.COMPLETED:
            return 100.0
        if self.phase == self.State.CANARY and 0 <= self.step_index < len(self.plan["steps"]):
            return float(self.plan["steps"][self.step_index]["percentage"])
        return 0.0

    @property
    def shadow_percentage(self) -> float:
        if self.phase == self.State.SHADOW:
            return float(self.plan["shadow"]["percentage"])
        return 0.0


class RolloutTransition(models.Model):
    """One move of a rollout's state machine: the timeline on the rollout page."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="transitions")
    event = models.CharField(max_length=12, choices=Rollout.Event.choices)
    from_state = models.CharField(max_length=12)
    to_state = models.CharField(max_length=12)
    step_index = models.IntegerField()
    percentage = models.FloatField()
    automatic = models.BooleanField(default=False, help_text="decided by the analysis")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=150)
    reason = models.TextField()
    revision = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_state} → {self.to_state} ({self.event})"


class RolloutAnalysis(models.Model):
    """One analysis tick of a rollout: the verdict of every metric, with its statistic,
    interval and sample sizes, and the decision taken. ``tick`` (the 30-second slot) is
    unique per rollout, so two beat processes analysing at once record — and act — once."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="analyses")
    tick = models.DateTimeField()
    step_index = models.IntegerField()
    percentage = models.FloatField()
    verdicts = models.JSONField(default=list)
    decision = models.CharField(max_length=12)
    reason = models.TextField()
    candidate_requests = models.BigIntegerField(default=0)
    stable_requests = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-tick"]
        constraints = [
            models.UniqueConstraint(
                fields=["rollout", "tick"], name="rollout_analysis_once_per_tick"
            )
        ]

    def __str__(self) -> str:
        return f"analysis of rollout #{self.rollout_id} at {self.tick}: {self.decision}"
