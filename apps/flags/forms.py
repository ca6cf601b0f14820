from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError

from apps.core.input_guards import json_loads
from apps.core.ui import ExpectedVersionField

from .models import AgentMode, FlagType, KillSwitchKind, KillSwitchScope

_JSON_WIDGET = {"rows": 10, "spellcheck": "false", "class": "mono", "autocomplete": "off"}
STRATEGIES_HELP = (
    "A JSON list of strategies; the flag is on for a context when any strategy matches. E.g. "
    '[{"name": "flexibleRollout", "parameters": {"rollout": "10", "stickiness": "default"}, '
    '"constraints": [{"contextName": "userId", "operator": "IN", "values": ["42"]}]}]'
)
VARIANTS_HELP = (
    'A JSON list, e.g. [{"name": "blue", "weightType": "variable", "payload": '
    '{"type": "string", "value": "b"}}]. Variable weights share what fixed ones leave of 1000.'
)
DEPENDENCIES_HELP = (
    'A JSON list of parent flags, e.g. [{"feature": "new-checkout", "enabled": true}].'
)
CONSTRAINTS_HELP = (
    'A JSON list, e.g. [{"contextName": "email", "operator": "STR_ENDS_WITH", '
    '"values": ["@acme.com"]}]'
)


def _choices(form: forms.Form, name: str) -> forms.ChoiceField:
    return cast(forms.ChoiceField, form.fields[name])


class JSONListField(forms.CharField):
    """A textarea holding a JSON list; the service validates what is inside, by path."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs=_JSON_WIDGET))
        kwargs.setdefault("required", False)
        super().__init__(strip=True, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | dict):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text:
            return []
        try:
            parsed = json_loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}.") from None
        if not isinstance(parsed, list):
            raise ValidationError("Expected a JSON list: [ … ].")
        return parsed


class FlagForm(forms.Form):
    name = forms.CharField(
        max_length=200, strip=False, help_text="what SDKs look up, e.g. support-bot.new-refund-flow"
    )
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=5000
    )
    type = forms.ChoiceField(choices=FlagType.choices, initial=FlagType.RELEASE)
    enabled = forms.BooleanField(required=False, label="On (SDKs evaluate its strategies)")
    impression_data = forms.BooleanField(required=False, label="Emit impression events in SDKs")
    strategies = JSONListField(help_text=STRATEGIES_HELP)
    variants = JSONListField(help_text=VARIANTS_HELP)
    dependencies = JSONListField(help_text=DEPENDENCIES_HELP)
    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
    )
    # Which editor the page showed: "form" (the structured editor, apps.flags.editor) or
    # "json" (strategies and variants as Unleash JSON, the advanced view).
    editor = forms.ChoiceField(
        choices=[("form", "form"), ("json", "json")],
        required=False,
        initial="form",
        widget=forms.HiddenInput,
    )

    def __init__(
        self, *args: Any, editing: bool = False, production: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            # The flag's version the form was filled from: saving is refused if it moved.
            self.fields["expected_version"] = ExpectedVersionField()
            del self.fields["name"]
            del self.fields[
                "enabled"
            ]  # on/off goes through the toggle, which confirms in production
        if production:
            self.fields["reason"].required = True
            self.fields["reason"].help_text = "Required: this is a production environment."

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        """Service errors are keyed by path (strategies.0.parameters.rollout) and say in
        words where they are ("Strategy 1: rollout must be …"): show each on the field its
        path starts with, or above the form."""
        for path, messages in errors.items():
            head = path.partition(".")[0]
            field = {"impressionData": "impression_data"}.get(head, head)
            self.add_error(field if field in self.fields else None, list(messages))


class SegmentForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=5000
    )
    constraints = JSONListField(help_text=CONSTRAINTS_HELP, required=True)
    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
    )

    def __init__(
        self, *args: Any, editing: bool = False, production: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            # The segment's version the form was filled from: saving is refused if it moved.
            self.fields["expected_version"] = ExpectedVersionField()
        if production:
            self.fields["reason"].required = True

    add_service_errors = FlagForm.add_service_errors


class ImportForm(forms.Form):
    environment = forms.TypedChoiceField(coerce=int)
    mode = forms.ChoiceField(
        choices=[
            ("merge", "Merge: create or replace these flags, keep the others"),
            ("replace", "Replace: afterwards the environment holds exactly this payload"),
        ],
        initial="merge",
        widget=forms.RadioSelect,
    )
    file = forms.FileField(
        required=False, help_text="the JSON of GET /api/client/features from an Unleash server"
    )
    payload = forms.CharField(
        required=False, widget=forms.Textarea(attrs=_JSON_WIDGET), label="…or paste it"
    )
    reason = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args: Any, environments: Any = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _choices(self, "environment").choices = [(e.pk, e.name) for e in environments]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        upload = data.get("file")
        text = (
            upload.read().decode("utf-8", errors="replace") if upload else data.get("payload", "")
        )
        if not (text or "").strip():
            raise ValidationError("Upload a file or paste the payload.")
        try:
            data["parsed"] = json_loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}.") from None
        return data


SCOPE_LABELS = {
    KillSwitchScope.GLOBAL: "Everywhere: every environment of every tenant",
    KillSwitchScope.TENANT: "Every environment of this tenant",
    KillSwitchScope.AGENT: "This agent, in every environment",
    KillSwitchScope.ENVIRONMENT: "One environment (choose it below)",
}


class KillSwitchForm(forms.Form):
    """What to stop, and where. The confirmation page states its effect and asks for the
    reason separately (``apps.core.ui.ReasonForm``)."""

    kind = forms.ChoiceField(choices=KillSwitchKind.choices, widget=forms.HiddenInput)
    scope = forms.ChoiceField(choices=KillSwitchScope.choices, label="Where")
    agent = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    environment = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    tool_pattern = forms.CharField(
        required=False,
        max_length=200,
        label="Tool (name or pattern)",
        help_text="e.g. issue_refund, or issue_* for every tool starting with issue_",
    )
    mode = forms.ChoiceField(choices=[("", "—"), *AgentMode.choices], required=False, label="Mode")

    def __init__(
        self,
        *args: Any,
        agents: Any = (),
        environments: Any = (),
        allow_global: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        kind = self.data.get("kind") if self.is_bound else self.initial.get("kind")
        needs_agent = kind in (KillSwitchKind.AGENT_MODE, KillSwitchKind.AGENT_STOPPED)
        agent_choices: list[tuple[Any, str]] = [] if needs_agent else [("", "every agent")]
        _choices(self, "agent").choices = [*agent_choices, *[(a.pk, a.name) for a in agents]]
        self.fields["agent"].required = needs_agent
        _choices(self, "environment").choices = [
            ("", "every environment"),
            *[(e.pk, e.name) for e in environments],
        ]
        scopes = (
            [KillSwitchScope.AGENT, KillSwitchScope.ENVIRONMENT]
            if needs_agent
            else [s for s in KillSwitchScope if allow_global or s != KillSwitchScope.GLOBAL]
        )
        _choices(self, "scope").choices = [(s.value, SCOPE_LABELS[s]) for s in scopes]
        self.fields["mode"].required = kind == KillSwitchKind.AGENT_MODE
        if kind != KillSwitchKind.AGENT_MODE:
            self.fields["mode"].widget = forms.HiddenInput()
        if needs_agent:
            self.fields["tool_pattern"].widget = forms.HiddenInput()
