"""SDK metrics buckets (``POST /api/client/metrics``): the evaluation counts of each flag
and variant, read liberally where the meaning is plain and each flag on its own."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from apps.core.lookalike import hidden_character_message

from .names import NAME_MAX
from .report import Problems, join

# At most this many evaluations of one flag (or variant) in one SDK bucket: far above what
# an SDK counts in its interval (about a minute), far below the bigint the hourly totals are
# kept in, so no bucket can push a total past it (the upsert saturates there besides).
MAX_BUCKET_COUNT = 10**12
MAX_BUCKET_FLAGS = 10_000
MAX_BUCKET_VARIANTS = 200
_COUNT_TEXT = re.compile(r"^\s*\d+\s*$")


def _metric_count(value: Any, path: str, problems: Problems) -> int:
    """One evaluation count: ``null`` or absent is 0 (an SDK with nothing to say), a whole
    number (or its decimal text) is taken; negative, fractional or oversized ones are
    refused at ``path``."""
    if value is None:
        return 0
    count: int | None = None
    if isinstance(value, bool):
        count = None
    elif isinstance(value, int):
        count = value
    elif isinstance(value, float | Decimal):
        count = int(value) if math.isfinite(value) and value == int(value) else None
    elif isinstance(value, str) and len(value) <= 40 and _COUNT_TEXT.match(value):
        count = int(value)
    if count is None:
        problems.error(path, "A whole number of evaluations.")
        return 0
    if count < 0:
        problems.error(path, "Must be at least 0.")
        return 0
    if count > MAX_BUCKET_COUNT:
        problems.error(path, f"At most {MAX_BUCKET_COUNT:,} evaluations per bucket.")
        return 0
    return count


def _metric_name(name: str) -> str | None:
    if not name or len(name) > NAME_MAX:
        return f"Names have 1 to {NAME_MAX} characters."
    return hidden_character_message(name)


@dataclass
class MetricsToggles:
    """What ``parse_metrics_toggles`` read: the counts to add, the errors by field, the
    flag names refused, and whether the whole ``toggles`` was unusable."""

    counted: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)
    refused: list[str] = field(default_factory=list)
    unusable: bool = False


def parse_metrics_toggles(raw: Any, path: str = "bucket.toggles") -> MetricsToggles:
    """The ``toggles`` of an Unleash metrics bucket (``{flag: {"yes": n, "no": n,
    "variants": {name: n}}}``), read liberally where the meaning is plain (``null`` counts,
    ``"variants": null`` and a ``null`` entry are none) and each flag on its own: a flag
    whose entry is wrong is left out with errors at ``bucket.toggles.<flag>.<field>``, the
    others are counted as ``{flag: {"yes": int, "no": int, "variants": {name: int}}}``."""
    result = MetricsToggles()
    problems = result.problems
    if raw is None:
        return result
    if not isinstance(raw, dict):
        problems.error(path, "Must be an object: flag name -> counts.")
        result.unusable = True
        return result
    if len(raw) > MAX_BUCKET_FLAGS:
        problems.error(path, f"At most {MAX_BUCKET_FLAGS:,} flags per bucket.")
        result.unusable = True
        return result
    counted = result.counted
    for name, entry in raw.items():
        epath = join(path, str(name)[:NAME_MAX])
        mine = Problems()
        if (message := _metric_name(name)) is not None:
            mine.error(epath, message)
        entry = {} if entry is None else entry
        if not isinstance(entry, dict):
            mine.error(epath, 'Must be an object: {"yes": n, "no": n, "variants": {…}}.')
            entry = {}
        yes = _metric_count(entry.get("yes"), join(epath, "yes"), mine)
        no = _metric_count(entry.get("no"), join(epath, "no"), mine)
        variants: dict[str, int] = {}
        raw_variants = entry.get("variants")
        vpath = join(epath, "variants")
        if raw_variants is not None and not isinstance(raw_variants, dict):
            mine.error(vpath, "Must be an object: variant name -> count.")
        elif raw_variants:
            if len(raw_variants) > MAX_BUCKET_VARIANTS:
                mine.error(vpath, f"At most {MAX_BUCKET_VARIANTS} variants per flag.")
            else:
                for variant, count in raw_variants.items():
                    if (message := _metric_name(variant)) is not None:
                        mine.error(join(vpath, str(variant)[:NAME_MAX]), message)
                    variants[variant] = _metric_count(
                        count, join(vpath, str(variant)[:NAME_MAX]), mine
                    )
        if mine.errors:
            for key, messages in mine.errors.items():
                problems.errors.setdefault(key, []).extend(messages)
            result.refused.append(name)
            continue
        counted[name] = {"yes": yes, "no": no, "variants": variants}
    return result
