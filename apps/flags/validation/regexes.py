"""Regular expressions as the SDKs evaluate them: RE2 syntax (Unleash's Yggdrasil uses
Rust ``regex``, the JavaScript SDK ``re2js``), so a pattern is checked with RE2, not ``re``."""

from __future__ import annotations

import re2

from .report import Problems

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error comes back to the caller, not to stderr


def check_regex(value: str, path: str, problems: Problems) -> None:
    """A regular expression RE2 compiles: the SDK engines (Rust ``regex`` in Unleash's
    Yggdrasil, ``re2js``) are of the RE2 family, with no look-around and no
    back-references; a pattern they cannot compile never matches."""
    try:
        re2.compile(value, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        problems.error(
            path,
            f"Not a regular expression the SDKs evaluate ({detail}): they use RE2 syntax, "
            "with no look-ahead, look-behind or back-references.",
        )
