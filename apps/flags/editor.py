"""The structured strategy editor: a flag's strategies (with their constraints and strategy
variants) and its variants as Django formsets, so an operator builds a gradual rollout with
a constraint without typing JSON. It works without JavaScript (rows are added by a submit
button the server answers); ``static/js/flag_editor.js`` adds and removes rows in place and
keeps the operator list fitting the chosen context field.

The editor only collects: every field is text or a checkbox and passes through as the
operator typed it (``"abc"`` as a rollout included), because the server's validation
(``apps.flags.validation``) is the one validator and says in words what is wrong, keyed by
path (``strategies.0.constraints.1.values``), which ``add_errors`` shows on the row.

What the rows cannot show (a variant's overrides, parameters of no known strategy) rides
along in hidden JSON fields, so switching to the JSON view and back loses nothing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms
from django.forms import formset_factory
from django.http import QueryDict

from .validation import (
    DATE_OPERATORS,
    LIST_OPERATORS,
    OPERATORS,
    PAYLOAD_TYPES,
    STRATEGIES,
    VALUE_OPERATORS,
    operators_for,
)

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
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


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
                segments.append(int(item) if item.isdigit() else item)
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
            variant["weight"] = int(text) if text.isdigit() else text
        variant["stickiness"] = data["stickiness"].strip() or "default"
        if data["payload_type"]:
            variant["payload"] = {"type": data["payload_type"], "value": data["payload_value"]}
        overrides = _load_json(data.get("overrides") or "")
        if overrides:
            variant["overrides"] = overrides
        return variant


StrategyFormSet = formset_factory(StrategyForm, extra=0, can_delete=True)
ConstraintFormSet = formset_factory(ConstraintForm, extra=0, can_delete=True)
VariantFormSet = formset_factory(VariantForm, extra=0, can_delete=True)

# What a row added by the server (no script) starts with: a rollout of everyone, IN, and a
# variant sharing what is left.
_NEW_ROW: dict[str, dict[str, str]] = {
    "strategy": {"name": "flexibleRollout", "rollout": "100", "stickiness": "default"},
    "constraint": {"operator": "IN"},
    "variant": {"weight_type": "variable", "stickiness": "default"},
}
ROW = "__row__"  # the placeholder of nested rows' templates (the strategies' is __prefix__)


@dataclass
class StrategyBlock:
    """One strategy as the template shows it: its row, its constraints, its variants."""

    index: int
    form: StrategyForm
    constraints: Any  # ConstraintFormSet
    variants: Any  # VariantFormSet
    errors: list[str]

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def constraint_template(self) -> ConstraintForm:
        """A blank constraint row, ``__row__`` where its index goes (the script's template)."""
        form = ConstraintForm(
            prefix=f"{self.constraints.prefix}-{ROW}",
            empty_permitted=True,
            use_required_attribute=False,
        )
        self.constraints.add_fields(form, None)  # its "Remove" box
        return form

    @property
    def variant_template(self) -> VariantForm:
        """A blank strategy variant row, ``__row__`` where its index goes."""
        form = VariantForm(
            prefix=f"{self.variants.prefix}-{ROW}",
            empty_permitted=True,
            use_required_attribute=False,
        )
        self.variants.add_fields(form, None)
        return form


def _management(data: QueryDict, prefix: str) -> None:
    """A nested formset the page never sent (a strategy added by the server): empty."""
    for key, value in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0")):
        data.setdefault(f"{prefix}-{key}", value)


class StrategyEditor:
    """The formsets of one flag's strategies and variants, bound to a POST or filled from
    the stored documents."""

    def __init__(
        self,
        data: QueryDict | None = None,
        *,
        strategies: list[dict[str, Any]] | None = None,
        variants: list[dict[str, Any]] | None = None,
    ) -> None:
        self.data = data.copy() if data is not None else None
        self.errors: list[str] = []  # about the strategies or variants as a whole
        self.variant_errors: list[str] = []
        if self.data is not None:
            self._bind(self.data)
            return
        self._fill(strategies or [], variants or [])

    def _bind(self, data: QueryDict) -> None:
        self.strategies = StrategyFormSet(data, prefix="strategy")
        total = self._total("strategy")
        for i in range(total):
            _management(data, f"strategy-{i}-constraint")
            _management(data, f"strategy-{i}-variant")
        self.blocks = [
            StrategyBlock(
                i,
                self.strategies.forms[i] if i < len(self.strategies.forms) else StrategyForm(),
                ConstraintFormSet(data, prefix=f"strategy-{i}-constraint"),
                VariantFormSet(data, prefix=f"strategy-{i}-variant"),
                [],
            )
            for i in range(total)
        ]
        self.variants = VariantFormSet(data, prefix="variant")

    def _fill(self, strategies: list[dict[str, Any]], variants: list[dict[str, Any]]) -> None:
        self.strategies = StrategyFormSet(
            prefix="strategy", initial=[StrategyForm.initial_from(s) for s in strategies]
        )
        self.blocks = [
            StrategyBlock(
                i,
                self.strategies.forms[i],
                ConstraintFormSet(
                    prefix=f"strategy-{i}-constraint",
                    initial=[ConstraintForm.initial_from(c) for c in s.get("constraints") or []],
                ),
                VariantFormSet(
                    prefix=f"strategy-{i}-variant",
                    initial=[VariantForm.initial_from(v) for v in s.get("variants") or []],
                ),
                [],
            )
            for i, s in enumerate(strategies)
        ]
        self.variants = VariantFormSet(
            prefix="variant", initial=[VariantForm.initial_from(v) for v in variants]
        )

    def _total(self, prefix: str) -> int:
        assert self.data is not None
        try:
            return max(0, min(int(self.data.get(f"{prefix}-TOTAL_FORMS", "0")), 100))
        except ValueError:
            return 0

    @property
    def strategy_template(self) -> StrategyBlock:
        """A blank strategy (the script's template for "Add a strategy")."""
        prefix = "strategy-__prefix__"
        return StrategyBlock(
            -1,
            self.strategies.empty_form,
            ConstraintFormSet(prefix=f"{prefix}-constraint"),
            VariantFormSet(prefix=f"{prefix}-variant"),
            [],
        )

    def add_row(self, prefix: str) -> bool:
        """One more blank row in the formset ``prefix`` (the no-script "Add" buttons);
        False for a prefix the editor does not have."""
        known = {"strategy", "variant"} | {
            f"strategy-{b.index}-{kind}" for b in self.blocks for kind in ("constraint", "variant")
        }
        if self.data is None or prefix not in known:
            return False
        index = self._total(prefix)
        self.data[f"{prefix}-TOTAL_FORMS"] = str(index + 1)
        kind = prefix.rpartition("-")[2] if "-" in prefix else prefix
        for key, value in _NEW_ROW[kind].items():
            self.data[f"{prefix}-{index}-{key}"] = value
        self._bind(self.data)
        return True

    def is_valid(self) -> bool:
        """The management forms are intact (every field is text: the service checks them)."""
        formsets: list[Any] = [self.strategies, self.variants]
        formsets += [fs for b in self.blocks for fs in (b.constraints, b.variants)]
        return all(fs.is_valid() for fs in formsets)

    def documents(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(strategies, variants) as Unleash documents, rows marked for removal left out."""
        strategies = []
        for block in self.blocks:
            form = block.form
            if not hasattr(form, "cleaned_data") or form.cleaned_data.get("DELETE"):
                continue
            document = form.document()
            document["constraints"] = [
                f.document()
                for f in block.constraints.forms
                if f.cleaned_data and not f.cleaned_data.get("DELETE")
            ]
            document["variants"] = [
                f.document()
                for f in block.variants.forms
                if f.cleaned_data and not f.cleaned_data.get("DELETE")
            ]
            strategies.append(document)
        variants = [
            f.document()
            for f in self.variants.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        return strategies, variants

    def add_errors(self, errors: Mapping[str, list[str]]) -> dict[str, list[str]]:
        """Show the service's errors (keyed by path, worded) on their rows: a constraint's
        on the constraint, a strategy's on the strategy, a variant's on the variant. The
        paths count the rows kept, so removed rows are skipped. Returns the errors that
        are about no row (for the form)."""
        kept = [
            b
            for b in self.blocks
            if hasattr(b.form, "cleaned_data") and not b.form.cleaned_data.get("DELETE")
        ]
        kept_variants = [
            f for f in self.variants.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        rest: dict[str, list[str]] = {}
        for path, messages in errors.items():
            parts = path.split(".")
            if parts[0] == "strategies" and len(parts) > 1 and parts[1].isdigit():
                index = int(parts[1])
                if index < len(kept):
                    block = kept[index]
                    row = self._row(block, parts[2:])
                    if row is not None:
                        row.add_error(None, messages)
                    else:
                        block.errors.extend(messages)
                    continue
            if parts[0] == "strategies":
                self.errors.extend(messages)
                continue
            if (
                parts[0] == "variants"
                and len(parts) > 1
                and parts[1].isdigit()
                and int(parts[1]) < len(kept_variants)
            ):
                kept_variants[int(parts[1])].add_error(None, messages)
                continue
            if parts[0] == "variants":
                self.variant_errors.extend(messages)
                continue
            rest[path] = list(messages)
        return rest

    @staticmethod
    def _row(block: StrategyBlock, parts: list[str]) -> forms.Form | None:
        if len(parts) < 2 or not parts[1].isdigit():
            return None
        formset = {"constraints": block.constraints, "variants": block.variants}.get(parts[0])
        if formset is None:
            return None
        kept = [f for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        return kept[int(parts[1])] if int(parts[1]) < len(kept) else None

    @property
    def has_errors(self) -> bool:
        if self.errors or self.variant_errors or any(b.errors for b in self.blocks):
            return True
        rows = [f for b in self.blocks for f in (*b.constraints.forms, *b.variants.forms)]
        return any(f.errors for f in [*rows, *self.variants.forms, *self.strategies.forms])


__all__ = [
    "CONTEXT_FIELDS",
    "DATE_OPERATORS",
    "LIST_OPERATORS",
    "STICKINESS",
    "STRATEGIES",
    "ConstraintForm",
    "StrategyEditor",
    "StrategyForm",
    "VariantForm",
]
