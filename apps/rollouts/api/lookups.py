"""Lookups the release, rollout and deployment endpoints share: a bundle version named in a
request body, and the ``expected_version`` a state change requires."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from apps.bundles.models import BundleVersion
from apps.core.api import expected_version
from apps.tenancy.models import Agent


def bundle_version_of(agent: Agent, number: int) -> BundleVersion:
    """``agent``'s version ``number``; raises ``ValidationError`` on ``version`` (400) when
    the agent has none."""
    version = BundleVersion.objects.filter(agent=agent, number=number).first()
    if version is None:
        raise ValidationError({"version": [f"{agent.name} has no v{number}."]})
    return version


def required_version(request: Request, data: dict[str, Any], read_from: str) -> int:
    """The ``expected_version`` (body) or ``If-Match`` of a change that must name what it
    read; raises ``ValidationError`` on ``expected_version`` (400) saying where ``read_from``
    it comes from when there is none."""
    seen = expected_version(request, data)
    if seen is None:
        raise ValidationError({"expected_version": [f"Required: {read_from}, or If-Match."]})
    return seen
