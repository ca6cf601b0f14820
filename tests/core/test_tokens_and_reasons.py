"""The kernel's token parsing and hashing (shared by Django and the fast path) and the one
reason check every service uses."""

from __future__ import annotations

import hashlib

import pytest
from django.core.exceptions import ValidationError

from apps.core.reasons import REASON_REQUIRED, require_reason
from apps.core.tokens import (
    MAX_TOKEN_LENGTH,
    RUNTIME_TOKEN_PREFIX,
    hash_token,
    runtime_token_candidate,
    token_from_header,
)


@pytest.mark.parametrize(
    ("header", "raw"),
    [
        ("cprt_abc", "cprt_abc"),
        ("  cprt_abc  ", "cprt_abc"),
        ("Bearer cprt_abc", "cprt_abc"),
        ("bearer   cprt_abc ", "cprt_abc"),
        ("", ""),
    ],
)
def test_token_from_header__bare_or_bearer__gives_the_raw_token(header: str, raw: str) -> None:
    assert token_from_header(header) == raw


@pytest.mark.parametrize(
    "header", ["Bearer cpat_abc", "nope", RUNTIME_TOKEN_PREFIX + "x" * MAX_TOKEN_LENGTH]
)
def test_runtime_token_candidate__wrong_prefix_or_too_long__is_empty(header: str) -> None:
    assert runtime_token_candidate(header) == ""


def test_runtime_token_candidate__well_formed__is_the_raw_token() -> None:
    assert runtime_token_candidate("Bearer cprt_abc") == "cprt_abc"


def test_hash_token__is_sha256_hex_of_utf8() -> None:
    assert hash_token("cprt_é") == hashlib.sha256("cprt_é".encode()).hexdigest()


def test_require_reason__blank__field_error() -> None:
    with pytest.raises(ValidationError) as refused:
        require_reason("  ")
    assert refused.value.message_dict == {"reason": [REASON_REQUIRED]}


def test_require_reason__collecting__adds_to_errors_and_returns_empty() -> None:
    errors: dict[str, list[str]] = {"name": ["bad"]}
    assert require_reason(None, message="why?", errors=errors) == ""
    assert errors == {"name": ["bad"], "reason": ["why?"]}


def test_require_reason__given__stripped() -> None:
    assert require_reason(" incident ") == "incident"
