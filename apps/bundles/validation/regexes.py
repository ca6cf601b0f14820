"""Bundle regular expressions are RE2 syntax: what every runtime can evaluate in linear time.

A bundle author writes regexes in three places: a rule condition's ``op: matches`` value, an
input ``blocked_patterns`` entry, and a JSON-Schema ``pattern`` (or ``patternProperties``
key) in a tool's parameters. Each is checked here with RE2 (PyPI ``google-re2``), the engine
the reference runtime evaluates them with (``dataplane/regex.py``) and the family a Go, Rust
or JavaScript (``re2js``) runtime has: look-ahead, look-behind, back-references, possessive
quantifiers and the like are refused, so no pattern means one thing here and another (or
nothing, or a catastrophic backtracking) on a runtime's request path. docs/bundle-format.md,
"Regular expressions"; docs/decisions/0016-bundle-regexes-re2.md."""

from __future__ import annotations

from typing import Any

import re2
from jsonschema import Draft202012Validator, FormatChecker

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the problem goes back to the author, not to stderr


def regex_problem(pattern: str) -> str | None:
    """Why RE2 cannot compile ``pattern`` (RE2's own words), or None when it can. Not
    ``dataplane.regex.regex_problem``: there RE2 is optional (absent, every pattern fails
    closed); here it is a dependency, and a missing one must fail loudly, not refuse bundles."""
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return str(detail)
    return None


def regex_message(problem: str) -> str:
    """The located error text for a pattern RE2 refuses (``problem`` from regex_problem)."""
    return (
        f"Not an RE2 regular expression ({problem}): bundle patterns are RE2 syntax, "
        "with no look-ahead, look-behind, back-references or possessive quantifiers, so "
        "every runtime evaluates them alike and in linear time."
    )


def _is_re2(instance: Any) -> bool:
    return not isinstance(instance, str) or regex_problem(instance) is None


#: The formats of JSON Schema 2020-12, with ``regex`` (what the meta-schema asks of
#: ``pattern`` values and ``patternProperties`` keys) meaning RE2 instead of Python's ``re``.
FORMAT_CHECKER = FormatChecker()
FORMAT_CHECKER.checks("regex")(_is_re2)

#: The 2020-12 meta-schema, checking tool parameters with RE2 patterns.
META_VALIDATOR = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=FORMAT_CHECKER
)
