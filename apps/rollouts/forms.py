from typing import Any, cast

from django import forms


class DeployForm(forms.Form):
    """Deploy a version to an environment. ``seen`` is hidden: the release-history version
    (live deployment's sequence) of every environment as the page showed it, as
    ``"<environment id>:<sequence>,…"``, so the choice of environment can change on the page
    and the deploy still carries what its user saw there (optimistic concurrency)."""

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
        self, *args, environments=(), versions=(), current=None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        current = current or {}
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
        return data
