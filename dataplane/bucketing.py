"""Unleash ``flexibleRollout`` bucketing, so runtimes and Unleash SDKs agree on who is in.

Unleash hashes ``"<groupId>:<identifier>"`` with 32-bit murmur3 (x86, seed 0 for strategies),
takes it modulo 100 and adds one, giving a bucket in 1..100; a context is enabled when its bucket
is at most the rollout percentage. Reproduced here rather than calling yggdrasil-engine because
the runtime only needs this one function, and ``mmh3`` is a small, pure dependency; the
conformance tests pin it to the values the official SDKs produce."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import mmh3

STRATEGY_SEED = 0
# Stickiness names Unleash resolves from fixed context fields rather than custom properties.
_DEFAULT = "default"
_RANDOM = "random"


def normalized_hash(identifier: str, group_id: str, modulus: int = 100, seed: int = 0) -> int:
    """Bucket in ``1..modulus`` of ``identifier`` in ``group_id`` (Unleash's normalizedValue)."""
    return mmh3.hash(f"{group_id}:{identifier}", seed, signed=False) % modulus + 1


def _random_id() -> str:
    # Unleash uses a random number for "random" stickiness; any fresh id buckets uniformly.
    return str(random.randint(1, 100_000))


def stickiness_value(
    stickiness: str,
    context: Mapping[str, Any],
    random_id: Callable[[], str] = _random_id,
) -> str | None:
    """The identifier Unleash would hash for ``stickiness``, or None when the context lacks it.

    ``context`` uses Unleash's field names: ``userId``, ``sessionId``, ``remoteAddress`` and a
    ``properties`` mapping for custom fields."""
    properties = context.get("properties") or {}
    if stickiness == _DEFAULT:
        value = context.get("userId") or context.get("sessionId")
        return str(value) if value else random_id()
    if stickiness == _RANDOM:
        return random_id()
    value = context.get(stickiness)
    if value in (None, ""):
        value = properties.get(stickiness)
    return str(value) if value not in (None, "") else None


def flexible_rollout_enabled(
    percentage: int | float | str,
    group_id: str,
    stickiness: str = _DEFAULT,
    context: Mapping[str, Any] | None = None,
    random_id: Callable[[], str] = _random_id,
) -> bool:
    """Unleash's ``flexibleRollout`` strategy for one context.

    A missing stickiness field disables the strategy (as in the SDKs), except that ``default``
    falls back to a random identifier."""
    rollout = float(percentage)
    if rollout <= 0:
        return False
    identifier = stickiness_value(stickiness or _DEFAULT, context or {}, random_id)
    if identifier is None:
        return False
    return normalized_hash(identifier, group_id) <= rollout


# Context fields Unleash reads from the context itself; any other name is a custom property.
_TOP_LEVEL_FIELDS = ("userId", "sessionId", "remoteAddress", "environment", "appName")


def context_value(name: str, context: Mapping[str, Any]) -> str | None:
    """The value of context field ``name`` as Unleash resolves it: a top-level field, else
    ``properties[name]``; None when absent."""
    value = context.get(name) if name in _TOP_LEVEL_FIELDS else None
    if value in (None, ""):
        value = (context.get("properties") or {}).get(name)
    return str(value) if value not in (None, "") else None


def constraint_met(
    context_name: str, operator: str, values: Iterable[str], context: Mapping[str, Any]
) -> bool:
    """Unleash's set constraints: ``IN`` holds when the field is present and among
    ``values``; ``NOT_IN`` when it is not among them (an absent field is not among them, as
    in the SDKs). Any other operator is not met (fail closed: never widens a canary)."""
    value = context_value(context_name, context)
    if operator == "IN":
        return value is not None and value in set(values)
    if operator == "NOT_IN":
        return value is None or value not in set(values)
    return False


def rollout_enabled(
    percentage: int | float | str,
    group_id: str,
    stickiness: str,
    constraints: Iterable[tuple[str, str, Iterable[str]]],
    context: Mapping[str, Any] | None = None,
    random_id: Callable[[], str] = _random_id,
) -> bool:
    """A ``flexibleRollout`` strategy with constraints, as an Unleash SDK evaluates the
    ``rollout.<agent>`` feature: every constraint met, then the bucket within the percentage.
    ``constraints``: (context name, operator, values) triples."""
    context = context or {}
    if not all(constraint_met(n, op, v, context) for n, op, v in constraints):
        return False
    return flexible_rollout_enabled(percentage, group_id, stickiness, context, random_id)
