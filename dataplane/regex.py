"""Bundle regular expressions, compiled and evaluated with RE2 (PyPI ``google-re2``).

Every regex a bundle author writes — a rule's ``op: matches`` value, an input
``blocked_patterns`` entry, a JSON-Schema ``pattern`` / ``patternProperties`` key in a tool's
parameters — is RE2 syntax (docs/bundle-format.md, "Regular expressions"): the control plane
validates it with RE2, and this runtime evaluates it with RE2, so a pattern means the same
here as in a Go, Rust or JavaScript (``re2js``) runtime, and matching is linear in the input
(no catastrophic backtracking, e.g. ``(a+)+$``, on the request path).

Matching is a *search*: a pattern matches when it matches anywhere in the text, like
``re.search``; anchor it with ``^`` / ``$`` (or ``\\A`` / ``\\z``) to test the whole text.

A pattern RE2 refuses (look-around, back-references, possessive quantifiers, ...; possible in
a version stored before the control plane checked with RE2), or any pattern when RE2 itself is
not installed, compiles to None: callers fail closed (docs/decisions/0016-bundle-regexes-re2.md).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from jsonschema import Draft202012Validator, ValidationError, validators

try:  # the dependency is declared; its absence must not make deny rules silently lapse
    import re2
except ImportError:  # pragma: no cover - exercised by monkeypatching RE2_AVAILABLE in tests
    re2 = None

RE2_AVAILABLE = re2 is not None


class CompiledPattern(Protocol):
    """What a compiled RE2 pattern offers here."""

    def search(self, text: str) -> Any: ...


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the problem goes back to the caller, not to stderr
    return options


_OPTIONS = _options() if re2 is not None else None


def regex_problem(pattern: str) -> str | None:
    """Why RE2 cannot compile ``pattern`` (a short English text), or None when it can."""
    if not RE2_AVAILABLE or re2 is None:
        return "RE2 (PyPI google-re2) is not installed in this runtime"
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return str(detail)
    return None


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> CompiledPattern | None:
    """The RE2-compiled ``pattern``, or None when it cannot be compiled (see regex_problem).
    Cached: a bundle's patterns are compiled once, not per request."""
    if not RE2_AVAILABLE or regex_problem(pattern) is not None:
        return None
    compiled: CompiledPattern = re2.compile(pattern, _OPTIONS)
    return compiled


def search(pattern: str, text: str) -> bool | None:
    """Whether ``pattern`` matches anywhere in ``text``; None when it cannot be compiled."""
    compiled = compile_pattern(pattern)
    if compiled is None:
        return None
    return compiled.search(text) is not None


# -- JSON Schema with RE2 ``pattern`` / ``patternProperties`` ---------------------------------


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    found = search(pattern, instance)
    if found is None:
        # Fail closed: an argument cannot be checked against a pattern RE2 refuses.
        yield ValidationError(f"{pattern!r} is not an RE2 pattern, so no value satisfies it")
    elif not found:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, pattern_properties: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        for key, value in instance.items():
            found = search(pattern, key)
            if found is None:
                yield ValidationError(
                    f"{pattern!r} is not an RE2 pattern, so property {key!r} cannot be checked"
                )
            elif found:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    # jsonschema's own version tests the patternProperties keys with ``re``; this one with RE2.
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties") or {}
    patterns = list(schema.get("patternProperties") or {})
    extras = sorted(
        key
        for key in instance
        if key not in properties and not any(search(p, key) for p in patterns)
    )
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif additional is False and extras:
        yield ValidationError(
            f"Additional properties are not allowed ({', '.join(map(repr, extras))} unexpected)"
        )


def uses_pattern_properties(schema: Any) -> bool:
    """Whether a ``patternProperties`` mapping appears anywhere in ``schema``."""
    if isinstance(schema, Mapping):
        if isinstance(schema.get("patternProperties"), Mapping):
            return True
        return any(uses_pattern_properties(value) for value in schema.values())
    if isinstance(schema, list):
        return any(uses_pattern_properties(value) for value in schema)
    return False


_LIBRARY_UNEVALUATED = Draft202012Validator.VALIDATORS["unevaluatedProperties"]


def _unevaluated_properties(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    # jsonschema finds the keys patternProperties evaluated with ``re``, deep in its own
    # code; the control plane refuses this combination, so a stored schema with it fails
    # closed rather than put a backtracking engine on the request path.
    if validator.is_type(instance, "object") and uses_pattern_properties(validator.schema):
        yield ValidationError(
            "unevaluatedProperties with patternProperties is not supported: no value is valid"
        )
        return
    yield from _LIBRARY_UNEVALUATED(validator, unevaluated, instance, schema)


#: Draft 2020-12 with ``pattern``, ``patternProperties`` and ``additionalProperties`` matched
#: by RE2 instead of Python's backtracking ``re`` (what jsonschema uses by default), and
#: ``unevaluatedProperties`` refused next to ``patternProperties`` (see above).
RE2Draft202012Validator = validators.extend(
    Draft202012Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
        "unevaluatedProperties": _unevaluated_properties,
    },
)
