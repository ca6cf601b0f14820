"""Secret scanning: a bundle that carries a credential is refused, naming where.

Prompts and configuration reach the model, and a one-line prompt injection can make a model
repeat its system prompt; a database connection string in one is a leaked database. The
patterns follow the well-known shapes of provider keys; messages never repeat the secret."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .report import Report, child

_PLACEHOLDER = re.compile(
    r"^(\$\{.*\}|\$[A-Z_][A-Z0-9_]*|\{\{.*\}\}|<[^<>]*>|%\(.*\)s|\*+|x+|X+|\.\.\.|…)$"
)


def _is_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER.match(value))


def _has_letter_and_digit(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


@dataclass(frozen=True)
class SecretPattern:
    kind: str
    regex: re.Pattern[str]
    # Optional second look at the match, to leave placeholders and prose alone.
    accept: Callable[[re.Match[str]], bool] = lambda match: True


def _secret_group_is_real(match: re.Match[str]) -> bool:
    value = match.group("secret")
    return not _is_placeholder(value)


PATTERNS = [
    SecretPattern(
        "a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
    ),
    SecretPattern("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    SecretPattern(
        "a GitHub token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ),
    SecretPattern("an API key (sk-…)", re.compile(r"\bsk-(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}")),
    SecretPattern("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    SecretPattern("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    SecretPattern("a Stripe key", re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}")),
    SecretPattern(
        "a JSON Web Token",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ),
    SecretPattern(
        "a bearer token",
        re.compile(r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/-]{20,}=*)"),
        _secret_group_is_real,
    ),
    SecretPattern(
        "a connection string with a password",
        re.compile(
            r"\b[A-Za-z][A-Za-z0-9+.-]{1,30}://[^\s:/?#@'\"]+:(?P<secret>[^\s@/?#'\"]+)@[^\s/?#'\"]+"
        ),
        _secret_group_is_real,
    ),
    SecretPattern(
        "a password or key assignment",
        re.compile(
            r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|client[_-]?secret|password|passwd|pwd|"
            r"access[_-]?token|auth[_-]?token)\b\s*[:=]\s*[\"']?(?P<secret>[^\s\"',;]{8,})"
        ),
        lambda m: _secret_group_is_real(m) and _has_letter_and_digit(m.group("secret")),
    ),
]

_SECRET_KEY = re.compile(
    r"(?i)^(?:api[_-]?key|secret|client[_-]?secret|password|passwd|token|access[_-]?token|"
    r"auth[_-]?token|private[_-]?key|credentials?)$"
)

ADVICE = (
    "A bundle must not carry credentials: prompts and configuration reach the model and "
    "leak under prompt injection. Give the runtime its secrets through its own secret store."
)


def find_secret(text: str) -> str | None:
    """The kind of the first credential-looking thing in ``text``, if any."""
    for pattern in PATTERNS:
        for match in pattern.regex.finditer(text):
            if pattern.accept(match):
                return pattern.kind
    return None


def scan(content: Any, report: Report) -> None:
    def walk(value: Any, ptr: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                key_ptr = child(ptr, key)
                kind = find_secret(key)
                if kind:
                    report.error(key_ptr, f"This key looks like {kind}. {ADVICE}")
                if (
                    _SECRET_KEY.match(key)
                    and isinstance(item, str)
                    and item
                    and not _is_placeholder(item)
                ):
                    report.error(key_ptr, f"A credential under the key {key!r}. {ADVICE}")
                    continue
                walk(item, key_ptr)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, child(ptr, index))
        elif isinstance(value, str):
            kind = find_secret(value)
            if kind:
                report.error(ptr, f"Looks like {kind}. {ADVICE}")

    walk(content, "")
