from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.api import ReasonSerializer


class ReleaseOutput(serializers.Serializer):
    """The stable version of one agent in one environment, and where a rollback would go.
    ``version`` is the release history's version (the live deployment's sequence, 0 when
    nothing was deployed): send it back as ``expected_version`` to deploy or roll back."""

    environment = serializers.IntegerField()
    environment_slug = serializers.CharField()
    version = serializers.IntegerField()
    stable_version = serializers.IntegerField(
        allow_null=True, help_text="bundle version number (N of vN) runtimes serve"
    )
    kind = serializers.CharField(allow_null=True, help_text="deploy or rollback")
    deployed_by = serializers.CharField(allow_null=True)
    deployed_at = serializers.DateTimeField(allow_null=True)
    revision = serializers.IntegerField(allow_null=True)
    rollback_target = serializers.IntegerField(
        allow_null=True,
        help_text="the last known-good version number a rollback would bring back; null "
        "when a rollback would be refused (see rollback_refusal)",
    )
    rollback_refusal = serializers.CharField(allow_blank=True)


class _Expected(serializers.Serializer):
    expected_version = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text="Required (here or as If-Match): the release `version` you read; 409 if "
        "the stable version changed since.",
    )


class DeployInput(_Expected, ReasonSerializer):
    version = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="bundle version number to make stable"
    )
    override_reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        default="",
        help_text="Admins only: deploy past a promotion gate that is not met, saying why (audited)",
    )


class RollbackInput(_Expected, ReasonSerializer):
    """A reason and the version read: the rollout's while one runs, else the release's."""

    rollout = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**63 - 1,
        help_text="The `rollout.id` you saw in the release (null: none was running). If "
        "another state is current — e.g. a second click after the first rolled that rollout "
        "back — the answer is 409 and nothing changes, so one click never also reverts the "
        "stable version. Absent: whatever runs now is rolled back.",
    )


class ReleaseRolloutOutput(serializers.Serializer):
    """The rollout running for this agent and environment (null: none): while one runs, the
    one-click rollback rolls it back, and takes *its* ``version`` as ``expected_version``."""

    id = serializers.IntegerField()
    state = serializers.CharField()
    version = serializers.IntegerField(help_text="the rollout's version (grows every move)")
    candidate_version = serializers.IntegerField(help_text="bundle version number (N of vN)")
    percentage = serializers.FloatField()


class ReleaseWithRolloutOutput(ReleaseOutput):
    rollout = ReleaseRolloutOutput(allow_null=True)


class ReleaseRollbackOutput(ReleaseWithRolloutOutput):
    """The release after the one-click rollback, and what it did."""

    rolled_back = serializers.ChoiceField(
        choices=["rollout", "stable"],
        help_text="rollout: the running rollout was rolled back (stable stays); stable: no "
        "rollout ran, so the stable version was reverted to the last known-good one",
    )
    rolled_back_rollout = serializers.IntegerField(
        allow_null=True, help_text="the id of the rollout rolled back, if any"
    )
    summary = serializers.CharField()
    rollback_revision = serializers.IntegerField(
        help_text="the environment revision runtimes must reach to have rolled back"
    )


# --------------------------------------------------------------------------- rollouts

STICKINESS_HELP = (
    "what a session is bucketed by (Unleash flexibleRollout stickiness): sessionId, userId, "
    "tenantId, default or random; absent: the plan's"
)


class ConstraintSerializer(serializers.Serializer):
    """An Unleash constraint narrowing who may get the candidate (set operators only)."""

    contextName = serializers.CharField(max_length=100, help_text="e.g. tenantId, userId")
    operator = serializers.ChoiceField(choices=["IN", "NOT_IN"])
    values = serializers.ListField(
        child=serializers.CharField(max_length=200), min_length=1, max_length=500
    )


class RolloutStartInput(ReasonSerializer):
    agent = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="agent id")
    environment = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, help_text="environment id"
    )
    version = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="candidate bundle version number (N of vN)"
    )
    override_reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        default="",
        help_text="Admins only: start past a failing gate, saying why (audited)",
    )
    stickiness = serializers.ChoiceField(
        choices=["sessionId", "userId", "tenantId", "default", "random"],
        required=False,
        allow_blank=True,
        default="",
        help_text=STICKINESS_HELP,
    )
    constraints = ConstraintSerializer(  # type: ignore[call-arg]  # ListSerializer's bound
        many=True,
        required=False,
        max_length=10,
        help_text="e.g. a per-tenant canary: [{contextName: tenantId, operator: IN, values: "
        "[acme]}]",
    )


class RolloutActionInput(ReasonSerializer):
    expected_version = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text="The rollout `version` you read; 409 if it moved since. Same as If-Match.",
    )


class RolloutOutput(serializers.Serializer):
    id = serializers.IntegerField()
    agent = serializers.IntegerField(source="agent_id")
    agent_slug = serializers.CharField(source="agent.slug")
    environment = serializers.IntegerField(source="environment_id")
    environment_slug = serializers.CharField(source="environment.slug")
    candidate_version = serializers.IntegerField(source="candidate.number")
    baseline_version = serializers.IntegerField(
        source="baseline.number", help_text="the stable version it is judged against"
    )
    state = serializers.CharField(
        help_text="pending, shadow, canary, paused, completed, aborted or rolled_back"
    )
    paused_from = serializers.CharField(help_text="shadow or canary for a paused rollout")
    step = serializers.IntegerField(
        source="step_index", help_text="canary step index (0, 1, …); -1 before the canary"
    )
    steps = serializers.SerializerMethodField(help_text="how many canary steps the plan has")
    percentage = serializers.FloatField(help_text="share of live sessions on the candidate")
    shadow_percentage = serializers.FloatField(help_text="share of sessions shadowed")
    stickiness = serializers.CharField()
    group_id = serializers.CharField()
    constraints = serializers.JSONField()
    version = serializers.IntegerField(
        source="sequence", help_text="send back as expected_version (or If-Match) to move it"
    )
    reason = serializers.CharField()
    gate_override = serializers.CharField()
    outcome = serializers.CharField()
    started_by = serializers.CharField(source="started_by_label")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    last_analysed_at = serializers.DateTimeField(allow_null=True)

    def get_steps(self, rollout: Any) -> int:
        return len(rollout.plan.get("steps", []))


class RolloutTransitionOutput(serializers.Serializer):
    event = serializers.CharField()
    from_state = serializers.CharField()
    to_state = serializers.CharField()
    step = serializers.IntegerField(source="step_index")
    percentage = serializers.FloatField()
    automatic = serializers.BooleanField(help_text="decided by the analysis")
    actor = serializers.CharField(source="actor_label")
    reason = serializers.CharField()
    revision = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class RolloutAnalysisOutput(serializers.Serializer):
    tick = serializers.DateTimeField()
    step = serializers.IntegerField(source="step_index")
    percentage = serializers.FloatField()
    decision = serializers.CharField()
    reason = serializers.CharField()
    candidate_requests = serializers.IntegerField()
    stable_requests = serializers.IntegerField()
    verdicts = serializers.JSONField(
        help_text="per metric: verdict PASS, FAIL or INCONCLUSIVE, statistic, interval, samples"
    )


class RolloutDetailOutput(RolloutOutput):
    plan = serializers.JSONField(help_text="the plan as it was when the rollout started")
    transitions = RolloutTransitionOutput(many=True, source="transitions.all")
    latest_analysis = serializers.SerializerMethodField()

    @extend_schema_field(RolloutAnalysisOutput(allow_null=True))
    def get_latest_analysis(self, rollout: Any) -> dict[str, Any] | None:
        latest = rollout.analyses.order_by("-tick").first()
        return RolloutAnalysisOutput(latest).data if latest is not None else None


# --------------------------------------------------------------------------- plans


class RolloutPlanOutput(serializers.Serializer):
    environment = serializers.IntegerField()
    environment_slug = serializers.CharField()
    version = serializers.IntegerField(help_text="send back as expected_version to replace it")
    is_default = serializers.BooleanField(help_text="no plan saved: the default applies")
    plan = serializers.JSONField(
        help_text="shadow, steps, metrics, failure_limit, alpha, guardrail, stickiness (docs)"
    )


class RolloutPlanInput(ReasonSerializer):
    plan = serializers.JSONField(
        help_text="the whole plan document; errors are keyed by its dotted paths "
        "(plan.steps.1.percentage)"
    )
    expected_version = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text="The plan `version` you read; 409 if it changed since. Same as If-Match.",
    )


# --------------------------------------------------------------------------- deployments


class DeploymentOutput(serializers.Serializer):
    """One change of the stable version of an agent in an environment (the release
    history). The ``live`` row is what runtimes serve; its ``sequence`` is the version to
    send back as ``expected_version``."""

    id = serializers.IntegerField()
    agent = serializers.IntegerField(source="agent_id")
    agent_slug = serializers.CharField(source="agent.slug")
    environment = serializers.IntegerField(source="environment_id")
    environment_slug = serializers.CharField(source="environment.slug")
    bundle_version = serializers.IntegerField(
        source="version.number", help_text="bundle version number (N of vN) this made stable"
    )
    kind = serializers.CharField(help_text="deploy or rollback")
    state = serializers.CharField(
        help_text="live (runtimes serve it now), superseded (replaced by a deploy: known-good) "
        "or rolled_back (replaced by a rollback: never a rollback target again)"
    )
    sequence = serializers.IntegerField(
        help_text="1, 2, 3… per agent and environment; the live row's is the `expected_version` "
        "of the next deploy or rollback"
    )
    previous_bundle_version = serializers.IntegerField(
        source="previous.version.number",
        default=None,
        allow_null=True,
        help_text="the version it replaced (null: the first deploy here)",
    )
    restores = serializers.IntegerField(
        source="restores_id",
        allow_null=True,
        help_text="for a rollback: the id of the known-good deployment it brought back",
    )
    deployed_by = serializers.CharField(source="deployed_by_label")
    reason = serializers.CharField()
    gate_override = serializers.CharField(
        help_text="why an Admin deployed past a promotion gate that was not met ('' if none)"
    )
    revision = serializers.IntegerField(
        help_text="the environment revision runtimes must reach to serve it"
    )
    created_at = serializers.DateTimeField()


class DeploymentCreateInput(_Expected, ReasonSerializer):
    """A deploy: ``agent``, ``environment`` (ids), ``version`` (N of vN), ``reason``, optional
    ``expected_version``; ``override_gate`` with ``override_reason`` (Admins) to pass a gate
    that is not met. Raises a field error for an override without a reason, or the reverse."""

    agent = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="agent id")
    environment = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, help_text="environment id (of the agent's tenant)"
    )
    version = serializers.IntegerField(
        min_value=1, max_value=2**31 - 1, help_text="bundle version number (N of vN) to make stable"
    )
    expected_version = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text="Optional: the `sequence` of the live deployment you read (0: none); 409 if "
        "the stable version changed since. Same as If-Match.",
    )
    override_gate = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Admins only: deploy even though the environment's promotion gate is not met "
        "(needs `override_reason`; audited)",
    )
    override_reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        default="",
        help_text="why the gate may be passed; kept in the deployment and its audit event",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        reason = attrs.get("override_reason", "").strip()
        if attrs.get("override_gate") and not reason:
            raise serializers.ValidationError(
                {"override_reason": ["Say why the gate may be passed (audited)."]}
            )
        if reason and not attrs.get("override_gate"):
            raise serializers.ValidationError(
                {"override_gate": ["Set override_gate to true to deploy past the gate."]}
            )
        return attrs


class DeploymentRollbackInput(ReasonSerializer):
    """A rollback: ``agent``, ``environment`` (ids), ``reason``, ``expected_version`` (required
    here or as If-Match) and an optional earlier known-good ``version`` to go back to."""

    agent = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="agent id")
    environment = serializers.IntegerField(
        min_value=1, max_value=2**63 - 1, help_text="environment id (of the agent's tenant)"
    )
    expected_version = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=2**31 - 1,
        help_text="Required (here or as If-Match): the live deployment's `sequence` you read "
        "— or, while a rollout runs, the rollout's `version`; 409 if it moved since, so two "
        "clients rolling back at once never go back two versions.",
    )
    version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**31 - 1,
        help_text="Optional target: an earlier known-good bundle version number to go back to "
        "(absent: the last known-good one). Refused while a rollout runs.",
    )


class DeploymentRollbackOutput(serializers.Serializer):
    """What a rollback did: a running rollout rolled back, or the stable version gone back;
    the environment revision to reach and the live deployment afterwards."""

    rolled_back = serializers.ChoiceField(
        choices=["rollout", "stable"],
        help_text="rollout: the running rollout was rolled back (stable stays); stable: the "
        "stable version went back to a known-good one",
    )
    rollout = serializers.IntegerField(
        allow_null=True, help_text="the id of the rollout rolled back, if any"
    )
    summary = serializers.CharField()
    revision = serializers.IntegerField(
        help_text="the environment revision runtimes must reach to have rolled back"
    )
    deployment = DeploymentOutput(help_text="the live deployment afterwards")


class GateCheckOutput(serializers.Serializer):
    """One requirement of a promotion gate (an evaluation suite's minimum pass rate) and
    whether the version meets it."""

    suite = serializers.CharField()
    min_pass_rate = serializers.CharField(help_text="share 0-1, exact decimal")
    min_pass_rate_percent = serializers.CharField()
    pass_rate = serializers.CharField(allow_null=True, help_text="null: no results yet")
    pass_rate_percent = serializers.CharField(allow_null=True)
    passed = serializers.IntegerField(allow_null=True)
    failed = serializers.IntegerField(allow_null=True)
    met = serializers.BooleanField()
    reason = serializers.CharField(help_text='e.g. "golden: 91.2% < 95% required (…)"')


class GateDocumentOutput(serializers.Serializer):
    """A promotion gate's state for one version in one environment, check by check."""

    environment = serializers.CharField()
    state = serializers.CharField(help_text="met, waiting (results missing) or failing")
    met = serializers.BooleanField()
    checks = GateCheckOutput(many=True)


class GateRefusalSerializer(serializers.Serializer):
    """The 422 answer to a deploy or rollout start that the promotion gate refuses (schema
    only): ``errors`` has one line per missing or short evaluation."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "detail": serializers.CharField(),
            "errors": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField())
            ),
            "gate": GateDocumentOutput(),
        }
