"""Refusals by policy that every app raises and the API answers with 422 Unprocessable
Content: the request is well formed and allowed, but what it asks for is not (yet) allowed
by a rule the tenant configured. Lives in the kernel so ``apps/core/api.py`` can answer it
without importing an app."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError


class GateNotMet(ValidationError):
    """A promotion gate refuses a version: a deploy, or a rollout start, of a version whose
    evaluation evidence does not meet the environment's gate.

    A ``ValidationError`` keyed by ``field`` (one message per unmet suite: ``golden: no
    results yet (needs 95%)``, ``adversarial: 82% < 90% required (9 of 50 failed)``), so a
    form shows the lines under the version field. The API answers it with 422 and
    ``{"detail": summary, "errors": {field: lines}, "gate": gate}``.

    Attributes: ``summary`` (one sentence naming the version and environment), ``lines``
    (list of str, one per unmet requirement), ``gate`` (JSON-able dict, as
    ``apps.rollouts.services.gating.gate_document`` builds it: ``environment``, ``state``,
    ``met``, ``checks`` [{suite, min_pass_rate, pass_rate, passed, failed, met, reason, …}]).
    How an allowed user passes it anyway is said in ``summary``."""

    def __init__(self, *, field: str, summary: str, lines: list[str], gate: dict[str, Any]):
        super().__init__({field: [ValidationError(line, code="gate") for line in lines]})
        self.field = field
        self.summary = summary
        self.lines = lines
        self.gate = gate
