"""Field-level differences between two JSON documents, as people read them: one change per
path (``strategies[0].parameters.rollout``), with the old and the new value, computed by
deepdiff (a maintained library; CONVENTIONS.md, "JSON diffs"). Used by the audit log (an
event's before/after) and by the approvals pane (arguments since the last approved call)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from deepdiff import DeepDiff

Kind = Literal["changed", "added", "removed"]
# deepdiff's report types, by what a reader calls them.
_KINDS: dict[str, Kind] = {
    "values_changed": "changed",
    "type_changes": "changed",
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_ABSENT = object()


@dataclass(frozen=True)
class Change:
    """One difference. ``steps``: the keys (str) and list indexes (int) from the root;
    ``before`` is absent for an added item, ``after`` for a removed one (``None`` then, with
    ``kind`` saying which)."""

    steps: tuple[str | int, ...]
    kind: Kind
    before: Any = None
    after: Any = None

    @property
    def path(self) -> str:
        """``strategies[0].parameters.rollout``; a key that is not a plain name is quoted
        (``labels["eu west"]``); the root itself is ``(whole value)``."""
        out = ""
        for step in self.steps:
            if isinstance(step, int):
                out += f"[{step}]"
            elif _NAME.match(step):
                out += f".{step}" if out else step
            else:
                out += f"[{json.dumps(step, ensure_ascii=False)}]"
        return out or "(whole value)"

    @property
    def dotted(self) -> str:
        """The same path as ``a.0.b`` (what the approvals pane keys its rows by)."""
        return ".".join(str(step) for step in self.steps)

    @property
    def before_json(self) -> str:
        """``before`` as JSON (never a Python repr); "" for an added item."""
        return "" if self.kind == "added" else as_json(self.before)

    @property
    def after_json(self) -> str:
        """``after`` as JSON; "" for a removed item."""
        return "" if self.kind == "removed" else as_json(self.after)

    def as_dict(self) -> dict[str, Any]:
        """The API form: ``{"path", "kind", "before"?, "after"?}`` (``before`` left out when
        added, ``after`` when removed, so ``null`` always means the JSON value null)."""
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.kind != "added":
            out["before"] = self.before
        if self.kind != "removed":
            out["after"] = self.after
        return out


def as_json(value: Any) -> str:
    """Compact, key-sorted JSON for display (``default=str`` for what JSON cannot spell)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _same_item(a: Any, b: Any, level: Any = None) -> bool:
    """Whether two list items are the same item (maybe changed): equal, or objects with the
    same ``id`` or, lacking one, the same ``name`` (a strategy, a variant, a segment). Items
    are otherwise matched by equality, so an insertion shows as one added item rather than
    every later item "changed"."""
    if a == b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        for key in ("id", "name"):
            if key in a and key in b:
                return bool(a[key] == b[key])
    return False


def _reordered(old: list[Any], new: list[Any]) -> bool:
    """Whether the items both lists share come in another order (not merely shifted by an
    insertion or a removal)."""
    used: set[int] = set()
    last = -1
    for item in new:
        match = next((i for i, o in enumerate(old) if i not in used and _same_item(o, item)), None)
        if match is None:
            continue
        used.add(match)
        if match < last:
            return True
        last = match
    return False


def json_changes(before: Any, after: Any) -> list[Change]:
    """Every difference from ``before`` to ``after`` (JSON-like values: dicts, lists, scalars),
    sorted by path. In a list, items are matched by identity (:func:`_same_item`): an item
    inserted or removed is one added or removed item, an item changed in place is a change
    inside it, and a list whose shared items changed order is one change of the whole list. A
    missing side (``None`` from a create or delete event) is read as an empty object when the
    other side is one, so each field shows as added or removed. Equal values give ``[]``."""
    if before is None and isinstance(after, dict):
        before = {}
    if after is None and isinstance(before, dict):
        after = {}
    # Matching list items costs the product of the lengths (and each changed item is a row):
    # a long list that changed is one change of the whole list, so a flag with 100,000
    # constraint values cannot keep the audit log busy for minutes.
    original = (before, after)
    before, after, whole = _long_lists_apart(before, after, ())
    # threshold_to_diff_deeper=0: always field by field, even when most keys changed (deepdiff
    # otherwise reports a dict whose keys mostly differ as one replaced value).
    tree = DeepDiff(
        before,
        after,
        ignore_order=False,
        view="tree",
        threshold_to_diff_deeper=0,
        iterable_compare_func=_same_item,
    )
    changes: list[Change] = []
    for report, kind in _KINDS.items():
        for level in tree.get(report, []):
            steps = tuple(level.path(output_format="list"))
            changes.append(
                Change(
                    steps=steps,
                    kind=kind,
                    before=None if kind == "added" else _at(original[0], steps),
                    after=None if kind == "removed" else _at(original[1], steps),
                )
            )
    # A move is only news when the order itself changed: then the whole list is shown.
    seen: set[tuple[str | int, ...]] = set()
    for level in tree.get("iterable_item_moved", []):
        parent = tuple(level.path(output_format="list"))[:-1]
        if parent in seen:
            continue
        seen.add(parent)
        if _reordered(level.up.t1, level.up.t2):
            changes = [c for c in changes if c.steps[: len(parent)] != parent]
            changes.append(
                Change(parent, "changed", _at(original[0], parent), _at(original[1], parent))
            )
    # a long list inside an item reported whole (a list item replaced) is in that change
    reported = [c.steps for c in changes]
    changes += [c for c in whole if not any(c.steps[: len(steps)] == steps for steps in reported)]
    return sorted(changes, key=_order)


def _at(document: Any, steps: tuple[str | int, ...]) -> Any:
    """The value at ``steps`` in ``document`` (the reported values come from the documents
    as given, not from the copies whose long lists were taken out)."""
    for step in steps:
        document = document[step]
    return document


# A list longer than this is compared as a whole: matching items is quadratic (1,000 items
# took 0.2 s, 5,000 took 4 s, and the audit API diffs a page of events).
LONG_LIST = 200
_SAME = object()  # stands for a long list on both sides once it is reported (or equal)


def _long_lists_apart(
    before: Any, after: Any, steps: tuple[str | int, ...]
) -> tuple[Any, Any, list[Change]]:
    """``before`` and ``after`` with every list of more than ``LONG_LIST`` items (on either
    side, at the same path) taken out — replaced by one marker on both sides — and one
    whole-list change for each that differs. Walks the objects both sides share (keys), and
    lists short enough to match item by item; copies only what it changes."""
    if isinstance(before, list) or isinstance(after, list):
        long = any(isinstance(v, list) and len(v) > LONG_LIST for v in (before, after))
        if long:
            same = before == after
            return _SAME, _SAME, [] if same else [Change(steps, "changed", before, after)]
        if not (isinstance(before, list) and isinstance(after, list)):
            return before, after, []
        found: list[Change] = []
        new_before, new_after = list(before), list(after)
        for i in range(min(len(before), len(after))):
            b, a, inner = _long_lists_apart(before[i], after[i], (*steps, i))
            new_before[i], new_after[i] = b, a
            found.extend(inner)
        return new_before, new_after, found
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        old_fields, new_fields = dict(before), dict(after)
        for key in before.keys() & after.keys():
            b, a, inner = _long_lists_apart(before[key], after[key], (*steps, key))
            old_fields[key], new_fields[key] = b, a
            found.extend(inner)
        return old_fields, new_fields, found
    return before, after, []


def _order(change: Change) -> list[tuple[int, str]]:
    # keys alphabetically, list indexes numerically
    return [(1, f"{s:012d}") if isinstance(s, int) else (0, s) for s in change.steps]
