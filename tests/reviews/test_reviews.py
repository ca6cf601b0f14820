"""Review sampling: a share of an agent's sessions lands in its queue (deterministically), a
reviewer grades them (audited, one grade per session), grades show beside the scores."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client

from apps.accounts.models import RuntimeToken
from apps.audit.models import AuditEvent
from apps.reviews import selectors, services
from apps.reviews.models import ReviewGrade
from apps.telemetry.services import records_ingest
from apps.tenancy.models import Agent, Tenant
from tests.telemetry.conftest import record

pytestmark = pytest.mark.django_db


def _sessions(token: RuntimeToken, count: int) -> None:
    result = records_ingest(
        token=token,
        records=[record(session_id=f"conv-{i}", quality_score=0.5) for i in range(count)],
    )
    assert not result.rejected


def test_sample_point__deterministic_in_unit_interval() -> None:
    points = [selectors.session_sample_point(7, f"s-{i}") for i in range(2000)]

    assert points[0] == selectors.session_sample_point(7, "s-0")
    assert all(Decimal(0) <= p < 1 for p in points)
    assert 0.4 < sum(p < Decimal("0.5") for p in points) / 2000 < 0.6


def test_queue__share__samples_about_that_share_and_grows_monotonically(
    admin,
    agent: Agent,
    token: RuntimeToken,
) -> None:
    _sessions(token, 200)
    production = agent.tenant.environments.get(slug="production")

    empty, _ = selectors.review_queue(agent=agent, environment=production)
    services.review_policy_set(actor=admin, agent=agent, share=Decimal("0.25"))
    quarter, _ = selectors.review_queue(agent=agent, environment=production)
    services.review_policy_set(actor=admin, agent=agent, share=Decimal("0.5"))
    half, _ = selectors.review_queue(agent=agent, environment=production)

    assert empty == []
    assert 25 <= len(quarter) <= 75
    assert {i.session.session_id for i in quarter} <= {i.session.session_id for i in half}


def test_grade__moves_session_to_graded_beside_scores_and_audits(
    admin,
    agent: Agent,
    token: RuntimeToken,
) -> None:
    _sessions(token, 30)
    services.review_policy_set(actor=admin, agent=agent, share=Decimal(1))
    production = agent.tenant.environments.get(slug="production")
    before = AuditEvent.objects.count()

    services.review_grade(
        actor=admin,
        agent=agent,
        environment=production,
        session_id="conv-3",
        grade="policy_issue",
        note="refunded without approval",
    )
    services.review_grade(
        actor=admin, agent=agent, environment=production, session_id="conv-3", grade="bad"
    )
    to_review, graded = selectors.review_queue(agent=agent, environment=production)

    assert len(to_review) == 29
    [item] = graded
    assert item.grade is not None and item.grade.grade == "bad"
    assert item.session.quality_mean == pytest.approx(0.5)
    assert ReviewGrade.objects.count() == 1
    events = list(AuditEvent.objects.order_by("id")[before:])
    assert [e.action for e in events] == ["review.graded", "review.graded"]
    assert events[1].before["grade"] == "policy_issue" and events[1].after["grade"] == "bad"


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"grade": "meh"}, "grade"), ({"session_id": " "}, "session_id")],
)
def test_grade__bad_input__field_error_nothing_stored(
    admin,
    agent: Agent,
    fields: dict[str, str],
    field: str,
) -> None:
    production = agent.tenant.environments.get(slug="production")
    data = {"session_id": "conv-1", "grade": "good", **fields}

    with pytest.raises(ValidationError) as caught:
        services.review_grade(actor=admin, agent=agent, environment=production, **data)

    assert field in caught.value.message_dict
    assert ReviewGrade.objects.count() == 0


def test_grade__viewer__refused(viewer, agent: Agent) -> None:
    production = agent.tenant.environments.get(slug="production")

    with pytest.raises(PermissionDenied):
        services.review_grade(
            actor=viewer, agent=agent, environment=production, session_id="s", grade="good"
        )


def test_policy__out_of_range__refused(admin, agent: Agent) -> None:
    with pytest.raises(ValidationError):
        services.review_policy_set(actor=admin, agent=agent, share=Decimal("1.5"))


def test_queue_page__grade_through_the_form(
    operator,
    agent: Agent,
    token: RuntimeToken,
    tenant: Tenant,
) -> None:
    _sessions(token, 5)
    client = Client()
    client.force_login(operator)
    empty = client.get(f"/agents/{agent.pk}/reviews/").content.decode()

    client.post(f"/agents/{agent.pk}/reviews/policy/", {"share": "1", "environment": "production"})
    page = client.get(f"/agents/{agent.pk}/reviews/").content.decode()
    response = client.post(
        f"/agents/{agent.pk}/reviews/grade/",
        {"environment": "production", "session_id": "conv-2", "grade": "good", "note": "fine"},
    )
    after = client.get(f"/agents/{agent.pk}/reviews/").content.decode()

    assert "Review sampling is off" in empty
    assert page.count('name="session_id"') == 5
    assert response.status_code == 302
    assert after.count('name="session_id"') == 4
    assert '<span class="badge ok">good</span>' in after and "fine" in after
