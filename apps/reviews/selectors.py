"""Reads of review sampling: which sessions are sampled, the queue, the grades."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from apps.telemetry.explorer import SessionSummary, session_summaries
from apps.tenancy.models import Agent, Environment

from .models import ReviewGrade, ReviewPolicy


def session_sample_point(agent_id: int, session_id: str) -> Decimal:
    """Where a session falls in [0, 1): the first 8 bytes of sha256("<agent id>:<session>")
    over 2**64. A session is sampled when its point is below the agent's share, so sampling
    needs no state, the same sessions stay sampled, and a larger share only adds some."""
    digest = hashlib.sha256(f"{agent_id}:{session_id}".encode()).digest()
    return Decimal(int.from_bytes(digest[:8], "big")) / Decimal(2**64)


def review_share(*, agent: Agent) -> Decimal:
    """The agent's review share (0 when none was set)."""
    policy = ReviewPolicy.objects.filter(agent=agent).first()
    return policy.share if policy is not None else Decimal(0)


@dataclass(frozen=True)
class QueueItem:
    session: SessionSummary
    grade: ReviewGrade | None


def review_queue(
    *, agent: Agent, environment: Environment, now: datetime | None = None
) -> tuple[list[QueueItem], list[QueueItem]]:
    """``(to_review, graded)``: the agent's sampled sessions in ``environment`` with kept
    records (the last ``TELEMETRY_RAW_RETENTION_DAYS``), most recently active first, split
    by whether a grade exists; graded ones carry it beside the automatic scores. Scans the
    5,000 most recent sessions."""
    share = review_share(agent=agent)
    now = now or timezone.now()
    since = now - timedelta(days=settings.TELEMETRY_RAW_RETENTION_DAYS)
    grades = {
        g.session_id: g
        for g in ReviewGrade.objects.filter(agent=agent, environment=environment).select_related(
            "reviewer"
        )
    }
    sessions = session_summaries(agent=agent, environment=environment, since=since)
    to_review: list[QueueItem] = []
    graded: list[QueueItem] = []
    for session in sessions:
        grade = grades.get(session.session_id)
        if grade is not None:
            graded.append(QueueItem(session, grade))
        elif share and session_sample_point(agent.pk, session.session_id) < share:
            to_review.append(QueueItem(session, None))
    return to_review, graded
