from typing import Any, cast

from django import forms

from apps.core.formsets import CountedFormSet
from apps.core.ui import ExpectedVersionField

from .plans import ALPHA_RANGE, STICKINESS


class DeployForm(forms.Form):
    """Deploy a version to an environment. ``seen`` is hidden: the release-history version
    (live deployment's sequence) of every environment as the page showed it, as
    ``"<environment id>:<sequence>,…"``, so the choice of environment can change on the page
    and the deploy still carries what its user saw there (optimistic concurrency).
    ``override_gate`` and ``override_reason`` exist only for a user who may deploy past a
    failing promotion gate (Admins)."""

    environment = forms.TypedChoiceField(coerce=int)
    version = forms.TypedChoiceField(
        coerce=int, help_text="the bundle version runtimes will serve as stable"
    )
    reason = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
        max_length=2000,
    )
    seen = forms.CharField(
        widget=forms.HiddenInput,
        max_length=2000,
        error_messages={"required": "The page did not say what it showed: reload it and retry."},
    )

    def __init__(  # type: ignore[no-untyped-def]
        self, *args, environments=(), versions=(), current=None, may_override=False, **kwargs
    ):
        super().__init__(*args, **kwargs)
        current = current or {}
        if may_override:
            self.fields["override_gate"] = forms.BooleanField(
                required=False,
                label="Override the promotion gate (Admins)",
                help_text="deploy even though the gate is not met; the reason below is audited",
            )
            self.fields["override_reason"] = forms.CharField(
                required=False,
                max_length=2000,
                widget=forms.Textarea(attrs={"rows": 2}),
                label="Why the gate may be passed",
            )
        cast(forms.ChoiceField, self.fields["environment"]).choices = [
            (
                e.pk,
                f"{e.name}{' (production)' if e.is_production else ''}"
                + (
                    f" — now v{current[e.pk].version.number}"
                    if current.get(e.pk)
                    else " — nothing deployed"
                ),
            )
            for e in environments
        ]
        cast(forms.ChoiceField, self.fields["version"]).choices = [
            (v.pk, f"v{v.number} — {v.message[:60]}") for v in versions
        ]
        self.fields["seen"].initial = ",".join(
            f"{e.pk}:{current[e.pk].sequence if current.get(e.pk) else 0}" for e in environments
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        seen: dict[int, int] = {}
        for part in (data.get("seen") or "").split(","):
            environment, _, sequence = part.partition(":")
            if environment.isdigit() and sequence.isdigit() and len(sequence) <= 10:
                seen[int(environment)] = int(sequence)
        if "environment" in data and "seen" in data:
            if data["environment"] not in seen:
                self.add_error(None, "The page did not say what it showed: reload it and retry.")
            else:
                data["expected_version"] = seen[data["environment"]]
        if data.get("override_gate") and not (data.get("override_reason") or "").strip():
            self.add_error("override_reason", "Say why the gate may be passed (audited).")
        return data

    def override_reason(self) -> str:
        """The gate override's reason when the box is ticked, else "" (no override)."""
        if not self.cleaned_data.get("override_gate"):
            return ""
        return str(self.cleaned_data.get("override_reason") or "")


class RolloutStartForm(forms.Form):
    """Start a rollout of a version to an environment. ``tenants`` narrows the canary to some
    tenants (an Unleash ``tenantId IN [...]`` constraint); ``override_reason`` exists only for
    a user who may start past a failing gate; ``confirmed`` is set by the production
    confirmation step."""

    version = forms.TypedChoiceField(coerce=int, label="Candidate version")
    environment = forms.TypedChoiceField(coerce=int)
    reason = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
        max_length=2000,
    )
    stickiness = forms.ChoiceField(
        required=False,
        help_text="what keeps a caller on the same version: the plan's choice unless you pick one",
    )
    tenants = forms.CharField(
        required=False,
        max_length=2000,
        label="Only these tenants (tenantId)",
        help_text="comma-separated tenant ids: only their sessions may get the candidate",
    )
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(  # type: ignore[no-untyped-def]
        self, *args, environments=(), versions=(), stable=None, may_override=False, **kwargs
    ):
        super().__init__(*args, **kwargs)
        stable = stable or {}
        cast(forms.ChoiceField, self.fields["environment"]).choices = [
            (
                e.pk,
                f"{e.name}{' (production)' if e.is_production else ''}"
                + (
                    f" — stable v{stable[e.pk].number}"
                    if stable.get(e.pk)
                    else " — nothing deployed"
                ),
            )
            for e in environments
        ]
        cast(forms.ChoiceField, self.fields["version"]).choices = [
            (v.number, f"v{v.number} — {v.message[:60]}") for v in versions
        ]
        cast(forms.ChoiceField, self.fields["stickiness"]).choices = [
            ("", "the plan's stickiness"),
            *[(s, s) for s in STICKINESS],
        ]
        if may_override:
            self.fields["override_reason"] = forms.CharField(
                required=False,
                max_length=2000,
                widget=forms.Textarea(attrs={"rows": 2}),
                label="Override a failing gate (Admins)",
                help_text="only if a gate fails: why this version may go anyway (audited)",
            )

    def constraints(self) -> list[dict[str, Any]]:
        """The canary's constraints from ``tenants`` (none when empty)."""
        values = [t.strip() for t in (self.cleaned_data.get("tenants") or "").split(",")]
        values = [t for t in values if t]
        if not values:
            return []
        return [{"contextName": "tenantId", "operator": "IN", "values": values}]


class PlanForm(forms.Form):
    """The scalar parts of a rollout plan; steps and metrics are formsets beside it. Ranges
    are judged by ``plans.plan_validate`` (its dotted keys map back onto these fields)."""

    shadow_percentage = forms.FloatField(
        label="Shadow share (%)",
        help_text="0: no shadow phase; the candidate's actions are never executed",
    )
    shadow_min_dwell_s = forms.IntegerField(label="Shadow minimum dwell (s)")
    shadow_min_requests = forms.IntegerField(label="Shadow minimum requests")
    failure_limit = forms.IntegerField(
        label="Consecutive failures before acting",
        help_text="ticks in a row a metric must FAIL before its on-failure action",
    )
    alpha = forms.FloatField(
        label=f"False-alarm rate per metric ({ALPHA_RANGE[0]:g} to {ALPHA_RANGE[1]:g})",
        help_text="about the chance that a healthy candidate fails a metric at all in a "
        "rollout; lower is quieter and slower to catch a regression",
    )
    guardrail_max_error_rate = forms.FloatField(
        label="Guardrail: error rate that rolls back at once (0 to 1)"
    )
    guardrail_min_requests = forms.IntegerField(label="Guardrail: minimum candidate requests")
    stickiness = forms.ChoiceField(help_text="what keeps a caller on the same version")
    reason = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
        max_length=2000,
    )

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["stickiness"]).choices = [(s, s) for s in STICKINESS]
        # the version the page showed (optimistic concurrency)
        self.fields["expected_version"] = ExpectedVersionField()

    # document key -> form field
    FIELD_OF = {
        "shadow.percentage": "shadow_percentage",
        "shadow.min_dwell_s": "shadow_min_dwell_s",
        "shadow.min_requests": "shadow_min_requests",
        "failure_limit": "failure_limit",
        "alpha": "alpha",
        "guardrail.max_error_rate": "guardrail_max_error_rate",
        "guardrail.min_requests": "guardrail_min_requests",
        "stickiness": "stickiness",
        "reason": "reason",
    }


class StepForm(forms.Form):
    percentage = forms.FloatField(label="Traffic (%)")
    min_dwell_s = forms.IntegerField(label="Minimum dwell (s)", initial=300)
    min_requests = forms.IntegerField(label="Minimum requests", initial=100)
    auto_advance = forms.BooleanField(required=False, initial=True, label="Advance automatically")


class MetricForm(forms.Form):
    metric = forms.CharField(widget=forms.HiddenInput)
    enabled = forms.BooleanField(required=False, label="Judged")
    tolerated_ratio = forms.FloatField(label="Tolerated ratio to stable")
    min_effect = forms.FloatField(label="Minimum effect")
    on_failure = forms.ChoiceField(choices=[("rollback", "roll back"), ("pause", "pause")])
    critical = forms.BooleanField(required=False, label="Critical")
    dry_run = forms.BooleanField(required=False, label="Dry run")


StepFormSet = forms.formset_factory(
    StepForm, extra=1, can_delete=True, max_num=20, formset=CountedFormSet
)
MetricFormSet = forms.formset_factory(MetricForm, extra=0, formset=CountedFormSet)
