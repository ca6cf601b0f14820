"""The rows of the structured strategy editor: a strategy, a constraint, a variant, each a
Django form of text fields and checkboxes that turns into (``document()``) and is filled from
(``initial_from``) an Unleash document. Nothing is checked here: the service does it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django import forms

from apps.core.input_guards import is_digits, json_loads

from ..validation import OPERATORS, PAYLOAD_TYPES, VALUE_OPERATORS, operators_for

# Context fields every SDK fills (Unleash's standard context); any other name is a custom
# property the application passes.
CONTEXT_FIELDS = ("userId", "sessionId", "remoteAddress", "environment", "appName", "currentTime")
STICKINESS = ("default", "userId", "sessionId", "random")
STRATEGY_LABELS = {
    "flexibleRollout": "Gradual rollout (flexibleRollout)",
    "default": "On for everyone who passes the constraints (default)",
    "userWithId": "Listed user ids (userWithId)",
    "remoteAddress": "IP addresses (remoteAddress)",
    "applicationHostname": "Host names (applicationHostname)",
    "gradualRolloutUserId": "Percentage of user ids (gradualRolloutUserId)",
    "gradualRolloutSessionId": "Percentage of sessions (gradualRolloutSessionId)",
    "gradualRolloutRandom": "Random percentage (gradualRolloutRandom)",
}
# Which row fields a strategy uses (the rest are hidden by the script, ignored on save).
PERCENT_KEY = {
    "flexibleRollout": "rollout",
    "gradualRolloutUserId": "percentage",
    "gradualRolloutSessionId": "percentage",
    "gradualRolloutRandom": "percentage",
}
LIST_KEY = {"userWithId": "userIds", "remoteAddress": "IPs", "applicationHostname": "hostNames"}
_ROW_FIELDS = {"rollout", "stickiness", "groupId", "userIds", "IPs", "hostNames", "percentage"}
_TEXT = {"autocomplete": "off", "spellcheck": "false"}


def _hidden_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else ""


def _load_json(text: str) -> Any:
    """A hidden field's JSON (None when empty); bounded like every JSON from outside
    (depth, NUL, NaN). Raises ``ValueError``."""
    return json_loads(text) if text.strip() else None


def _check_hidden_json(text: str, expected: type) -> str:
    """A hidden field the page wrote (JSON of ``expected`` type, or empty) as it came back:
    anything else was not written by the page, and the rows it belongs to are not saved
    without it (``ValidationError``: the editor says the form was incomplete)."""
    try:
        value = _load_json(text or "")
    except ValueError:
        raise forms.ValidationError("Not the JSON this page wrote.") from None
    if value is not None and not isinstance(value, expected):
        raise forms.ValidationError("Not the JSON this page wrote.")
    return text or ""


class StrategyForm(forms.Form):
    """One strategy: its kind and the parameters of that kind."""

    name = forms.ChoiceField(label="Strategy", choices=list(STRATEGY_LABELS.items()))
    rollout = forms.CharField(
        required=False,
        label="Rollout (%)",
        help_text="0 to 100: the share of the contexts that pass the constraints",
        widget=forms.TextInput(attrs={**_TEXT, "inputmode": "numeric", "size": 4}),
    )
    stickiness = forms.CharField(
        required=False,
        initial="default",
        help_text="which context field buckets a context: default (user, then session), "
        "userId, sessionId, random or a field of yours",
        widget=forms.TextInput(attrs={**_TEXT, "list": "flag-stickiness"}),
    )
    group_id = forms.CharField(
        required=False,
        label="Group id",
        help_text="contexts are bucketed per group; empty: the flag's name",
        widget=forms.TextInput(attrs=_TEXT),
    )
    list_values = forms.CharField(
        required=False,
        label="Values (comma-separated)",
        help_text="user ids, IP addresses or CIDR ranges, or host names",
        widget=forms.TextInput(attrs=_TEXT),
    )
    title = forms.CharField(required=False, max_length=200)
    segments = forms.CharField(
        required=False,
        label="Segments (ids, comma-separated)",
        widget=forms.TextInput(attrs=_TEXT),
    )
    extra = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["name"]
        assert isinstance(field, forms.ChoiceField)
        current = (
            self.data.get(self.add_prefix("name")) if self.is_bound else self.initial.get("name")
        )
        if current and current not in STRATEGY_LABELS:
            # A strategy no SDK knows (kept by an import): shown as it is; saving says why not.
            field.choices = [*STRATEGY_LABELS.items(), (current, f"{current} (unknown)")]

    @staticmethod
    def initial_from(strategy: Mapping[str, Any]) -> dict[str, Any]:
        """The row of a stored strategy document."""
        name = str(strategy.get("name", ""))
        parameters = dict(strategy.get("parameters") or {})
        percent = PERCENT_KEY.get(name)
        listed = LIST_KEY.get(name)
        row = {
            "name": name,
            "title": strategy.get("title", ""),
            "rollout": parameters.pop(percent, "") if percent else "",
            "stickiness": parameters.pop("stickiness", "default")
            if name == "flexibleRollout"
            else "default",
            "group_id": parameters.pop("groupId", "") if percent else "",
            "list_values": parameters.pop(listed, "") if listed else "",
            "segments": ", ".join(str(s) for s in strategy.get("segments") or []),
        }
        extra = {k: v for k, v in strategy.items() if k not in _STRATEGY_KEYS}
        if parameters:
            extra["parameters"] = parameters
        row["extra"] = _hidden_json(extra)
        return row

    def clean_extra(self) -> str:
        return _check_hidden_json(self.cleaned_data.get("extra", ""), dict)

    def document(self) -> dict[str, Any]:
        """The strategy document of this row (unchecked: the service checks it)."""
        data = self.cleaned_data
        name = data["name"]
        extra = _load_json(data.get("extra") or "")
        extra = extra if isinstance(extra, dict) else {}
        parameters: dict[str, Any] = {
            k: v for k, v in (extra.pop("parameters", None) or {}).items() if k not in _ROW_FIELDS
        }
        if name in PERCENT_KEY:
            parameters[PERCENT_KEY[name]] = data["rollout"].strip()
            if data["group_id"].strip():
                parameters["groupId"] = data["group_id"].strip()
        if name == "flexibleRollout":
            parameters["stickiness"] = data["stickiness"].strip() or "default"
        if name in LIST_KEY:
            parameters[LIST_KEY[name]] = data["list_values"].strip()
        document: dict[str, Any] = {"name": name, "parameters": parameters}
        if data["title"].strip():
            document["title"] = data["title"].strip()
        segments: list[Any] = []
        for item in (s.strip() for s in data["segments"].split(",")):
            if item:
                segments.append(int(item) if is_digits(item) else item)
        document["segments"] = segments
        document.update({k: v for k, v in extra.items() if k not in document})
        return document


_STRATEGY_KEYS = {"name", "title", "parameters", "segments", "constraints", "variants"}


class ConstraintForm(forms.Form):
    """One constraint: a context field, an operator that fits it, and its values."""

    context_name = forms.CharField(
        label="Context field",
        required=False,
        widget=forms.TextInput(
            attrs={**_TEXT, "list": "flag-context-fields", "data-context-field": ""}
        ),
    )
    operator = forms.ChoiceField(
        choices=[(op, op) for op in OPERATORS],
        widget=forms.Select(
            attrs={
                "data-operator": "",
                "data-fit-current-time": " ".join(operators_for("currentTime")),
                "data-fit-other": " ".join(operators_for("")),
                "data-one-value": " ".join(VALUE_OPERATORS),
            }
        ),
    )
    values = forms.CharField(
        required=False,
        help_text="one per line (DATE, NUM, SEMVER and REGEX operators compare one value)",
        widget=forms.Textarea(attrs={**_TEXT, "rows": 2}),
    )
    inverted = forms.BooleanField(required=False, label="Inverted (NOT)")
    case_insensitive = forms.BooleanField(required=False, label="Case-insensitive")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["operator"]
        assert isinstance(field, forms.ChoiceField)
        current = (
            self.data.get(self.add_prefix("operator"))
            if self.is_bound
            else self.initial.get("operator")
        )
        if current and current not in OPERATORS:
            field.choices = [*((op, op) for op in OPERATORS), (current, f"{current} (unknown)")]

    @staticmethod
    def initial_from(constraint: Mapping[str, Any]) -> dict[str, Any]:
        values = constraint.get("values")
        if constraint.get("operator") in VALUE_OPERATORS or not values:
            text = str(constraint.get("value") or "")
        else:
            text = "\n".join(str(v) for v in values)
        return {
            "context_name": constraint.get("contextName", ""),
            "operator": constraint.get("operator", "IN"),
            "values": text,
            "inverted": bool(constraint.get("inverted")),
            "case_insensitive": bool(constraint.get("caseInsensitive")),
        }

    def document(self) -> dict[str, Any]:
        data = self.cleaned_data
        operator = data["operator"]
        text = data["values"] or ""
        constraint: dict[str, Any] = {"contextName": data["context_name"], "operator": operator}
        if operator in VALUE_OPERATORS:
            constraint["value"] = text.strip()
        else:
            constraint["values"] = [line.strip() for line in text.splitlines() if line.strip()]
        constraint["inverted"] = data["inverted"]
        constraint["caseInsensitive"] = data["case_insensitive"]
        return constraint


class VariantForm(forms.Form):
    """One variant: name, weight, stickiness and payload."""

    name = forms.CharField(required=False, widget=forms.TextInput(attrs=_TEXT))
    weight_type = forms.ChoiceField(
        label="Weight",
        choices=[("variable", "shares what is left"), ("fix", "fixed")],
        initial="variable",
    )
    weight = forms.CharField(
        required=False,
        label="Fixed weight (of 1000)",
        help_text="for a fixed weight: 0 to 1000, e.g. 250 for 25%",
        widget=forms.TextInput(attrs={**_TEXT, "inputmode": "numeric", "size": 5}),
    )
    stickiness = forms.CharField(
        required=False,
        initial="default",
        widget=forms.TextInput(attrs={**_TEXT, "list": "flag-stickiness"}),
    )
    payload_type = forms.ChoiceField(
        required=False,
        label="Payload type",
        choices=[("", "no payload"), *[(t, t) for t in PAYLOAD_TYPES]],
    )
    payload_value = forms.CharField(
        required=False, label="Payload", widget=forms.Textarea(attrs={**_TEXT, "rows": 1})
    )
    overrides = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_overrides(self) -> str:
        return _check_hidden_json(self.cleaned_data.get("overrides", ""), list)

    @staticmethod
    def initial_from(variant: Mapping[str, Any]) -> dict[str, Any]:
        payload = variant.get("payload") or {}
        return {
            "name": variant.get("name", ""),
            "weight_type": variant.get("weightType") or "variable",
            "weight": "" if variant.get("weightType") != "fix" else variant.get("weight", ""),
            "stickiness": variant.get("stickiness") or "default",
            "payload_type": payload.get("type", ""),
            "payload_value": payload.get("value", ""),
            "overrides": _hidden_json(variant.get("overrides")),
        }

    def document(self) -> dict[str, Any]:
        data = self.cleaned_data
        variant: dict[str, Any] = {"name": data["name"], "weightType": data["weight_type"]}
        if data["weight_type"] == "fix":
            text = data["weight"].strip()
            variant["weight"] = int(text) if is_digits(text) else text
        variant["stickiness"] = data["stickiness"].strip() or "default"
        if data["payload_type"]:
            variant["payload"] = {"type": data["payload_type"], "value": data["payload_value"]}
        overrides = _load_json(data.get("overrides") or "")
        if overrides:
            variant["overrides"] = overrides
        return variant
