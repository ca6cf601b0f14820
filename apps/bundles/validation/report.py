"""Where validation findings are collected: JSON pointer -> messages."""

from __future__ import annotations

from collections.abc import Iterable

from apps.core.input_guards import is_digits

# Shared with flag names: one rule for what a readable name is (apps/core/lookalike.py).
from apps.core.lookalike import first_hidden_character as first_hidden_character
from apps.core.lookalike import hidden_character_message as hidden_character_message


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointer(*tokens: str | int) -> str:
    """``pointer("tools", 0, "name")`` -> ``/tools/0/name`` (RFC 6901)."""
    return "".join(f"/{escape(str(t))}" for t in tokens)


def child(base: str, *tokens: str | int) -> str:
    return base + pointer(*tokens)


def from_path(path: Iterable[str | int]) -> str:
    return pointer(*path)


def _sort_key(ptr: str) -> tuple[tuple[int, int | str], ...]:
    tokens = ptr.split("/")[1:] if ptr else []
    return tuple((0, int(t)) if is_digits(t) else (1, t) for t in tokens)


def sorted_findings(findings: dict[str, list[str]]) -> dict[str, list[str]]:
    return {key: findings[key] for key in sorted(findings, key=_sort_key)}


class Report:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}
        self.warnings: dict[str, list[str]] = {}

    def error(self, ptr: str, message: str) -> None:
        messages = self.errors.setdefault(ptr, [])
        if message not in messages:
            messages.append(message)

    def warn(self, ptr: str, message: str) -> None:
        messages = self.warnings.setdefault(ptr, [])
        if message not in messages:
            messages.append(message)
