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

    def worded(self) -> dict[str, list[str]]:
        """The errors as the API and the editor show them: keyed by the machine path
        (``strategies.0.parameters.rollout``), each message in words saying where
        (``Strategy 1: rollout must be a whole number from 0 to 100.``), see ``in_words``."""
        return {
            path: [in_words(path, message) for message in messages]
            for path, messages in self.errors.items()
        }


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


# The parts of a path, as people name them.
_CONTAINERS = {
    "strategies": "strategy",
    "constraints": "constraint",
    "variants": "variant",
    "overrides": "override",
    "dependencies": "dependency",
    "segments": "segment",
    "features": "flag",
}
_FIELDS = {
    "contextName": "context field",
    "caseInsensitive": "case-insensitive",
    "weightType": "weight type",
    "groupId": "group id",
    "userIds": "user ids",
    "hostNames": "host names",
    "feature": "parent flag",
    "impressionData": "impression data",
    "name": "name",
}


def _is_index(token: str) -> bool:
    """A list index of a path (ASCII digits: a key like "²" is a key, not an index)."""
    return token.isascii() and token.isdigit()


def in_words(path: str, message: str) -> str:
    """``message`` about ``path`` as a sentence that says where, for an operator:
    ``strategies.0.constraints.1.values`` + ``are required for IN.`` reads
    ``Strategy 1, constraint 2: values are required for IN.``. A message starting in
    lower case is a predicate of the field it names (``must be …``, ``is required …``);
    one starting in capitals stands after the field (``Strategy 1, operator: Unknown …``).
    A top-level path (``strategies``, ``name``) keeps the message, capitalised: the field
    it is shown on says where."""
    tokens = [t for t in path.split(".") if t] if path != "non_field_errors" else []
    if tokens[:1] == ["payload"]:
        tokens = tokens[1:]  # an import's payload.features.3.… is flag 4's …
    places: list[str] = []
    fields: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in _CONTAINERS and _is_index(following) and not fields:
            places.append(f"{_CONTAINERS[token]} {int(following) + 1}")
            i += 2
            continue
        if token == "parameters" and following:  # noqa: S105 (a path, no secret)
            i += 1
            continue
        if _is_index(token) and fields:
            fields[-1] = f"{fields[-1].removesuffix('s')} {int(token) + 1}"  # values.2: value 3
        else:
            fields.append(_FIELDS.get(token, token))
        i += 1
    field = " ".join(fields)
    if not places:
        return message[:1].upper() + message[1:]
    where = ", ".join(places)
    where = where[:1].upper() + where[1:]
    if message[:1].islower():
        return f"{where}: {field} {message}" if field else f"{where}: {message}"
    return f"{where}, {field}: {message}" if field else f"{where}: {message}"


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
