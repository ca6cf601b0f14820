"""The editor as a whole: formsets of strategies (each with its constraints and strategy
variants) and of variants, bound to a POST or filled from the stored documents; rows added
by the server for the no-script "Add" buttons; the service's errors shown on their rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django import forms
from django.forms import formset_factory
from django.http import QueryDict

from apps.core.formsets import CountedFormSet

from .rows import ConstraintForm, StrategyForm, VariantForm

StrategyFormSet = formset_factory(StrategyForm, extra=0, can_delete=True, formset=CountedFormSet)
ConstraintFormSet = formset_factory(
    ConstraintForm, extra=0, can_delete=True, formset=CountedFormSet
)
VariantFormSet = formset_factory(VariantForm, extra=0, can_delete=True, formset=CountedFormSet)

# What a row added by the server (no script) starts with: a rollout of everyone, IN, and a
# variant sharing what is left.
_NEW_ROW: dict[str, dict[str, str]] = {
    "strategy": {"name": "flexibleRollout", "rollout": "100", "stickiness": "default"},
    "constraint": {"operator": "IN"},
    "variant": {"weight_type": "variable", "stickiness": "default"},
}
# The most strategies the editor binds (a count above it would leave the rest out).
MAX_STRATEGIES = 100
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
    the stored documents. A POST with more than ``MAX_ROWS`` rows in all (strategies,
    constraints, variants) builds none and is not valid (``errors`` says why)."""

    MAX_ROWS = 300

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
        self.too_many = False  # the POST claimed more than MAX_ROWS rows (see _bind)
        if self.data is not None:
            self._bind(self.data)
            return
        self._fill(strategies or [], variants or [])

    def _bind(self, data: QueryDict) -> None:
        total = self._total("strategy")
        for i in range(total):
            _management(data, f"strategy-{i}-constraint")
            _management(data, f"strategy-{i}-variant")
        # The row counts are the client's to forge: more rows than a person builds would cost
        # seconds of a worker to build and render, so none are built and the POST is refused.
        prefixes = ["strategy", "variant"] + [
            f"strategy-{i}-{kind}" for i in range(total) for kind in ("constraint", "variant")
        ]
        self.too_many = sum(self._claimed(p) for p in prefixes) > self.MAX_ROWS
        if self.too_many:
            for prefix in prefixes:
                data[f"{prefix}-TOTAL_FORMS"] = "0"
            total = 0
        self.strategies = StrategyFormSet(data, prefix="strategy")
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

    def _claimed(self, prefix: str) -> int:
        """How many rows the POST says the formset ``prefix`` has (0 when it says nothing
        sensible)."""
        assert self.data is not None
        try:
            return max(0, int(self.data.get(f"{prefix}-TOTAL_FORMS", "0")))
        except ValueError:
            return 0

    def _total(self, prefix: str) -> int:
        return min(self._claimed(prefix), self.MAX_ROWS)

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
        """The management forms are intact — row counts from 0 to what the editor binds
        (a negative count would read as "no rows" and drop every row), at most ``MAX_ROWS``
        in all — and the hidden JSON fields are the page's (every other field is text: the
        service checks them)."""
        if self.too_many:
            message = (
                f"Too many rows: a flag's editor takes at most {self.MAX_ROWS} strategies, "
                "constraints and variants in all. Edit it as JSON, or split it."
            )
            if message not in self.errors:
                self.errors.append(message)
            return False
        formsets: list[Any] = [self.strategies, self.variants]
        formsets += [fs for b in self.blocks for fs in (b.constraints, b.variants)]
        if not all(fs.is_valid() for fs in formsets):  # CountedFormSet: no negative count
            return False
        if self.strategies.total_form_count() > MAX_STRATEGIES:
            message = f"Too many strategies: a flag takes at most {MAX_STRATEGIES}."
            if message not in self.errors:
                self.errors.append(message)
            return False
        return True

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
