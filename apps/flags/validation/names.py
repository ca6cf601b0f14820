"""Flag names: what SDKs look up by exact name, so no spaces, control or look-alike
characters, and the prefix reserved for kill switches; and the flag types."""

from __future__ import annotations

import re
from typing import Any

from apps.core.lookalike import name_problem

from .coerce import as_string
from .report import Problems

FLAG_TYPES = ("release", "experiment", "operational", "kill-switch", "permission")
RESERVED_PREFIX = "kill."  # kill switches compile to features under this prefix
ROLLOUT_PREFIX = "rollout."  # running rollouts compile to features under this prefix
NAME_MAX = 200
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def check_name(value: Any, path: str, problems: Problems, *, allow_reserved: bool = False) -> str:
    """A flag name SDKs can look up: 1..``NAME_MAX`` characters, no whitespace, control
    or look-alike characters, not under ``RESERVED_PREFIX`` unless ``allow_reserved``.
    Returns the name (or ``""``); problems are errors at ``path``."""
    name = as_string(value, path, problems) or ""
    if not isinstance(value, str):
        return name
    if not name:
        problems.error(path, "A name is required.")
    elif len(name) > NAME_MAX:
        problems.error(path, f"must be at most {NAME_MAX} characters.")
    elif _WHITESPACE_OR_CONTROL.search(name):
        problems.error(path, "No spaces or control characters: SDKs look flags up by exact name.")
    elif (problem := name_problem(name)) is not None:
        problems.error(path, problem)
    elif not allow_reserved and name.startswith(RESERVED_PREFIX):
        problems.error(
            path, f"Names starting with {RESERVED_PREFIX!r} are reserved for kill switches."
        )
    elif not allow_reserved and name.startswith(ROLLOUT_PREFIX):
        problems.error(path, f"Names starting with {ROLLOUT_PREFIX!r} are reserved for rollouts.")
    return name
