"""Validation and normalisation of Unleash documents: features, strategies, constraints,
segments, variants and dependencies. Pure functions, no database.

Two modes:

- **strict** (the editor and the operator API): only what the Unleash SDKs evaluate, with
  every value checked (a rollout is 0..100, a semver is a semver, a regex compiles, a
  referenced segment or parent flag exists), so a typo is a 400 and not a flag that is
  silently off;
- **import** (``strict=False``): stores a client-features payload faithfully, including what
  an SDK evaluates to "off" (an unknown operator, a custom strategy, an invalid regex, a
  missing segment), and reports those as warnings. Types are checked in both modes: every
  parameter is served as a string, because one number in a parameter makes the SDK's engine
  reject the whole payload.

Both modes run the same value checks (a number, an RFC 3339 date-time with its offset, a
semver without ``v``, a regex RE2 compiles, a CIDR, a percentage, a JSON payload): strict
mode refuses what fails them, import mode stores it and reports each as a warning.

Numbers become strings without losing a digit (``number_text``): integers exactly, floats
as their shortest round-trip form, ``Decimal`` as written.

Errors are keyed by path (``strategies.0.parameters.rollout``) so the API and the editor
can show them on the field.

One module per concern, like ``apps.bundles.validation``: ``report`` (problems, context,
the import-mode sink), ``numbers``, ``coerce`` (JSON types into the stored shape),
``names``, ``values`` and ``regexes`` (the value checks), ``constraints``, ``variants``,
``strategies``, ``dependencies``, ``features`` (features and segments) and ``metrics`` (SDK
metrics buckets). Import from this package, not from the modules: they may move."""

from __future__ import annotations

from .constraints import (
    DATE_OPERATORS,
    LIST_OPERATORS,
    NUM_OPERATORS,
    OPERATORS,
    SEMVER_OPERATORS,
    STRING_OPERATORS,
    VALUE_OPERATORS,
    normalize_constraint,
    normalize_constraints,
    operators_for,
)
from .dependencies import normalize_dependencies
from .features import FEATURE_KEYS, normalize_feature, normalize_segment
from .metrics import (
    MAX_BUCKET_COUNT,
    MAX_BUCKET_FLAGS,
    MAX_BUCKET_VARIANTS,
    MetricsToggles,
    parse_metrics_toggles,
)
from .names import FLAG_TYPES, NAME_MAX, RESERVED_PREFIX, check_name
from .numbers import number_text
from .regexes import check_regex
from .report import Context, Problems, in_words
from .strategies import PERCENT_PARAMETERS, STRATEGIES, normalize_strategies, normalize_strategy
from .values import check_date_time
from .variants import PAYLOAD_TYPES, TOTAL_WEIGHT, WEIGHT_TYPES, normalize_variants

__all__ = [
    "DATE_OPERATORS",
    "FEATURE_KEYS",
    "FLAG_TYPES",
    "LIST_OPERATORS",
    "MAX_BUCKET_COUNT",
    "MAX_BUCKET_FLAGS",
    "MAX_BUCKET_VARIANTS",
    "NAME_MAX",
    "NUM_OPERATORS",
    "OPERATORS",
    "PAYLOAD_TYPES",
    "PERCENT_PARAMETERS",
    "RESERVED_PREFIX",
    "SEMVER_OPERATORS",
    "STRATEGIES",
    "STRING_OPERATORS",
    "TOTAL_WEIGHT",
    "VALUE_OPERATORS",
    "WEIGHT_TYPES",
    "Context",
    "MetricsToggles",
    "Problems",
    "check_date_time",
    "check_name",
    "check_regex",
    "in_words",
    "normalize_constraint",
    "normalize_constraints",
    "normalize_dependencies",
    "normalize_feature",
    "normalize_segment",
    "normalize_strategies",
    "normalize_strategy",
    "normalize_variants",
    "number_text",
    "operators_for",
    "parse_metrics_toggles",
]
