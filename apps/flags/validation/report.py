"""Where findings go: ``Problems`` (errors by path, warnings), the ``Context`` a check
runs in, paths (``join``), and the scratch sink through which import mode turns what the
editor refuses into warnings (``value_sink`` / ``warn_from``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Problems:
    """Errors by path (refuse the whole document) and warnings (stored anyway, on import)."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    located: list[tuple[str, str]] = field(default_factory=list)  # (path, message) per warning

    def error(self, path: str, message: str) -> None:
        self.errors.setdefault(path or "non_field_errors", []).append(message)

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}" if path else message)
        self.located.append((path, message))

    def __bool__(self) -> bool:
        return bool(self.errors)


@dataclass(frozen=True)
class Context:
    """What a strict check needs to know about the environment."""

    strict: bool = True
    flag_name: str = ""
    segment_ids: frozenset[int] | None = None  # None: do not check references
    flags: Mapping[str, list[dict[str, Any]]] | None = None  # other flags' dependencies by name
    # Editing an existing flag: its name cannot change, so the name rules (which may be newer
    # than the flag) are not held against the edit.
    name_fixed: bool = False


def join(path: str, key: str | int) -> str:
    """``path.key``, or ``key`` at the top: the dotted paths errors are keyed by."""
    return f"{path}.{key}" if path else str(key)


def value_sink(problems: Problems, ctx: Context) -> Problems:
    """Where the editor's value checks report: the real problems in strict mode, a
    scratch list in import mode (turned into warnings by ``warn_from``)."""
    return problems if ctx.strict else Problems()


def warn_from(sink: Problems, problems: Problems, consequence: str) -> None:
    """Turn a scratch sink's errors into warnings on ``problems``, each ending with
    ``consequence`` (what the SDKs do with it); nothing when the sink is ``problems``."""
    if sink is problems:
        return
    for path, messages in sink.errors.items():
        for message in messages:
            problems.warn(path, f"{message.rstrip('.')}; {consequence}")
