"""The Approvals pages through Django's test client: the inbox shows an approver only its
queues (another queue's request is a 404), a Viewer reads but gets no decide buttons and is
refused a decision, a rejection needs a comment, a request decided meanwhile names who
decided, bulk decisions refuse anything but low risk, the detail pane marks the arguments
changed since the last approved call, queues are managed by Operators with field errors and
stale-edit refusals, and queue health renders with data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.approvals.models import ApprovalQueue, ApprovalRequest, Status
from apps.approvals.services import approval_decide, approval_open, queue_create, queue_update
from apps.tenancy.models import Agent, Tenant

from ..factories import make_user
from ..html import sidebar_links
from .conftest import ACTOR, body

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _open(tenant: Tenant, key: str, minutes_ago: float = 1, **fields: Any) -> ApprovalRequest:
    return approval_open(
        tenant_id=tenant.pk,
        environment_id=tenant.environments.get(slug="production").pk,
        token_id=None,
        token_agent_id=None,
        token_label="test",
        body=body(idempotency_key=key, session_id=f"s-{key}", **fields),
        now=timezone.now() - timedelta(minutes=minutes_ago),
    ).request


def _queue(tenant: Tenant, name: str, tools: list[str], approvers: list[User]) -> ApprovalQueue:
    return queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={"name": name, "match_tools": tools, "sla_s": 600, "approvers": approvers},
    )


def _refund(tenant: Tenant, key: str = "r1", amount: float = 42.5, **kw: Any) -> ApprovalRequest:
    return _open(tenant, key, arguments={"order_id": "A-1001", "amount": amount}, **kw)


def _email(tenant: Tenant, key: str = "e1", **kw: Any) -> ApprovalRequest:
    return _open(
        tenant, key, tool="send_email", arguments={"to": "c@example.com", "body": "Hi"}, **kw
    )


def _lookup(tenant: Tenant, key: str = "l1", **kw: Any) -> ApprovalRequest:
    return _open(tenant, key, tool="lookup_order", arguments={"order_id": key}, **kw)


# --------------------------------------------------------------------------- the inbox


def test_sidebar__links_to_the_inbox(operator: User, tenant: Tenant) -> None:
    html = _client(operator).get("/approvals/").content.decode()
    assert "/approvals/" in sidebar_links(html)
    assert "Nothing waiting." in html
    assert "POST /api/runtime/v1/approvals" in html


def test_inbox__approver__sees_only_its_queues(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User, approver2: User
) -> None:
    _queue(tenant, "Mail", ["send_email"], [approver2])
    refund = _refund(tenant)
    email = _email(tenant)
    alice = _client(approver)

    html = alice.get("/approvals/").content.decode()

    assert f'id="req-{refund.pk}"' in html
    assert f'id="req-{email.pk}"' not in html
    assert "Refunds" in html and "Mail" not in html
    assert alice.get(f"/approvals/{email.pk}/", **HX).status_code == 404
    assert alice.get(f"/approvals/?request={email.pk}").status_code == 404
    refused = alice.post(f"/approvals/{email.pk}/decide/", {"choice": "approve"})
    assert refused.status_code == 404
    email.refresh_from_db()
    assert email.status == Status.PENDING
    # bob decides Mail: he sees it, with its buttons
    pane = _client(approver2).get(f"/approvals/{email.pk}/", **HX).content.decode()
    assert "data-decision-form" in pane


def test_inbox__ordered_by_risk_then_age_with_the_sla_badge(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, operator: User
) -> None:
    old_low = _lookup(tenant, "l-old", minutes_ago=30)
    new_critical = _refund(tenant, "r-new", minutes_ago=1)
    old_critical = _refund(tenant, "r-old", minutes_ago=9, amount=10)  # SLA 600 s: near
    medium = _email(tenant, "e1", minutes_ago=5)

    html = _client(operator).get("/approvals/").content.decode()

    order = [html.index(f'id="req-{r.pk}"') for r in (old_critical, new_critical, medium, old_low)]
    assert order == sorted(order)
    assert "9 min · near SLA" in html
    assert "1 min · within SLA" in html
    assert "30 min · over SLA" in html  # the Default queue's SLA is 900 s
    assert "critical risk" in html and "medium risk" in html and "low risk" in html
    # the first is selected: its detail pane is open
    assert f'data-selected="{old_critical.pk}"' in html
    assert "0 of 2 approvals" in html


def test_inbox__filters_and_status(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, operator: User, approver: User
) -> None:
    refund = _refund(tenant)
    email = _email(tenant)
    client = _client(operator)

    by_tool = client.get("/approvals/?tool=send_email").content.decode()
    assert f'id="req-{email.pk}"' in by_tool and f'id="req-{refund.pk}"' not in by_tool
    by_queue = client.get(f"/approvals/?queue={refunds.pk}").content.decode()
    assert f'id="req-{refund.pk}"' in by_queue and f'id="req-{email.pk}"' not in by_queue
    by_risk = client.get("/approvals/?risk=write").content.decode()
    assert f'id="req-{email.pk}"' in by_risk and f'id="req-{refund.pk}"' not in by_risk
    old = client.get("/approvals/?age=3600").content.decode()
    assert "No request matches these filters." in old
    junk = client.get("/approvals/?queue=abc&risk=nope&age=7&status=zzz")
    assert junk.status_code == 200  # a stale bookmark still opens the inbox

    approval_decide(actor=approver, request=refund, choice="reject", comment="duplicate")
    waiting = client.get("/approvals/").content.decode()
    assert f'id="req-{refund.pk}"' not in waiting
    decided = client.get("/approvals/?status=decided").content.decode()
    assert f'id="req-{refund.pk}"' in decided and f'id="req-{email.pk}"' not in decided
    assert "rejected" in decided and "by alice-approver" in decided
    everything = client.get("/approvals/?status=all").content.decode()
    assert f'id="req-{refund.pk}"' in everything and f'id="req-{email.pk}"' in everything


def test_list_fragment__polled__counts_and_rows(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User
) -> None:
    refund = _refund(tenant, minutes_ago=20)

    html = _client(approver).get("/approvals/list/").content.decode()

    assert "<html" not in html
    assert f'id="req-{refund.pk}"' in html
    assert f'id="qc-{refunds.pk}"' in html
    assert "1 waiting" in html and "1 over SLA" in html


def test_list_fragment__query_budget(
    tenant: Tenant,
    agent: Agent,
    refunds: ApprovalQueue,
    approver: User,
    django_assert_max_num_queries: Any,
) -> None:
    _refund(tenant, "r-first")
    client = _client(approver)
    with CaptureQueriesContext(connection) as one:
        client.get("/approvals/list/")
    for index in range(12):
        _refund(tenant, f"r{index}", amount=index)
    with django_assert_max_num_queries(len(one)):
        response = client.get("/approvals/list/")
    assert response.content.decode().count('class="approval-row') == 13


def test_list_fragment__polled__does_not_read_every_tool_name_of_the_history(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User
) -> None:
    _refund(tenant)
    client = _client(approver)

    with CaptureQueriesContext(connection) as polled:
        client.get("/approvals/list/")
    # the tool filter's choices (a DISTINCT over every request ever made) are the page's,
    # not each open inbox's every few seconds: the fragment shows no filter form
    queries = [q["sql"] for q in polled.captured_queries]
    page = client.get("/approvals/").content.decode()

    assert queries and [sql for sql in queries if "DISTINCT" in sql] == []
    assert '<option value="issue_refund">' in page


# --------------------------------------------------------------------------- the detail pane


def test_detail__arguments_readable_and_changes_marked(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User, approver2: User
) -> None:
    first = _open(
        tenant,
        "r1",
        arguments={"order_id": "A-1001", "amount": 40, "note": {"lines": ["a", "b"]}},
    )
    approval_decide(actor=approver, request=first, choice="approve", comment="ok")
    approval_decide(actor=approver2, request=first, choice="approve", comment="ok")
    second = _open(
        tenant,
        "r2",
        arguments={
            "order_id": "A-1001",
            "amount": 4000,
            "note": {"lines": ["a", "c"]},
            "card_number": "4111",
        },
    )

    html = _client(approver).get(f"/approvals/{second.pk}/", **HX).content.decode()

    assert '<dl class="args"' in html
    assert "<dt>amount" in html and "▲ changed" in html and "was <del>40</del>" in html
    assert '<dl class="nested numbered">' in html  # the nested list, readable
    assert "lines" in html and "▲ added" in html  # card_number is new
    assert 'data-testid="changes"' in html and "note.lines.1" in html
    assert "redacted" in html and "4111" not in html
    assert f"Compared with #{first.pk}" in html
    assert "Two different approvers must approve" in html or "two different approvers" in html
    assert "The customer was charged twice" in html  # the agent's reason
    assert "I was charged twice!" in html  # the excerpt
    assert f"#{first.pk}" in html and "approved" in html  # recent decisions on the tool
    assert "0 of 2 approvals" in html


def test_detail__long_text_argument__shown_whole_to_the_approver(
    tenant: Tenant, agent: Agent, approver: User
) -> None:
    _queue(tenant, "Mail", ["send_email"], [approver])
    text = "Dear customer, " + "we are sorry. " * 200 + "PS: wire 5000 EUR to IBAN XX00 EVIL."
    email = _open(tenant, "e1", tool="send_email", arguments={"to": "c@example.com", "body": text})

    html = _client(approver).get(f"/approvals/{email.pk}/", **HX).content.decode()

    # what the approval pins is what the approver can read: all of it, not its first part
    assert len(text) > 2000 and "PS: wire 5000 EUR to IBAN XX00 EVIL." in html


def test_detail__deeply_nested_arguments__rendered_flat(
    tenant: Tenant, agent: Agent, operator: User
) -> None:
    nested: Any = "bottom"
    for _ in range(30):  # the service refuses arguments nested deeper than 32
        nested = {"a": nested}
    request = _open(tenant, "deep", tool="lookup_order", arguments={"q": nested})

    response = _client(operator).get(f"/approvals/{request.pk}/", **HX)

    assert response.status_code == 200
    assert response.content.decode().count('<dl class="nested') < 10


def test_detail__without_htmx__the_inbox_with_it_selected(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User
) -> None:
    refund = _refund(tenant)
    response = _client(approver).get(f"/approvals/{refund.pk}/")
    assert response.status_code == 302
    assert response["Location"] == f"/approvals/?request={refund.pk}"


# --------------------------------------------------------------------------- deciding


def test_viewer__no_decide_buttons__and_a_decision_is_refused(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, viewer: User
) -> None:
    refund = _refund(tenant)
    client = _client(viewer)

    html = client.get(f"/approvals/?request={refund.pk}").content.decode()

    assert f'id="req-{refund.pk}"' in html and "issue_refund" in html
    assert "data-decision-form" not in html and "Approve" not in html
    assert 'id="bulk-form"' not in html
    assert "Your role reads approval requests" in html
    response = client.post(f"/approvals/{refund.pk}/decide/", {"choice": "approve"})
    assert response.status_code == 403
    bulk = client.post("/approvals/bulk/", {"ids": [refund.pk], "choice": "approve"})
    assert bulk.status_code == 403
    refund.refresh_from_db()
    assert refund.status == Status.PENDING and refund.approvals == 0


def test_decide__reject_without_comment__field_error(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User
) -> None:
    refund = _refund(tenant)
    client = _client(approver)

    page = client.post(f"/approvals/{refund.pk}/decide/", {"choice": "reject", "comment": " "})
    pane = client.post(f"/approvals/{refund.pk}/decide/", {"choice": "reject"}, **HX)

    assert page.status_code == 400 and "Say why" in page.content.decode()
    assert "<html" in page.content.decode()
    assert pane.status_code == 400
    html = pane.content.decode()
    assert "<html" not in html
    assert 'id="decision-comment-errors"' in html and "Say why" in html
    assert 'aria-invalid="true"' in html
    refund.refresh_from_db()
    assert refund.status == Status.PENDING


def test_decide__critical__two_approvers(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User, approver2: User
) -> None:
    refund = _refund(tenant)

    first = _client(approver).post(
        f"/approvals/{refund.pk}/decide/", {"choice": "approve", "comment": "checked"}, **HX
    )

    html = first.content.decode()
    assert first.status_code == 200
    assert "it needs another approver (1 of 2)" in html
    assert 'data-final=""' in html and "data-decision-form" not in html
    second = _client(approver2).post(
        f"/approvals/{refund.pk}/decide/", {"choice": "approve", "next": "/approvals/"}
    )
    assert second.status_code == 302 and second["Location"] == "/approvals/"
    refund.refresh_from_db()
    assert refund.status == Status.APPROVED
    assert refund.decided_by_label == "alice-approver,bob-approver"
    followed = _client(approver2).get(f"/approvals/?request={refund.pk}").content.decode()
    assert "Approved" in followed and "by alice-approver and bob-approver" in followed


def test_decide__already_decided__names_who_decided(
    tenant: Tenant, agent: Agent, approver: User, approver2: User
) -> None:
    _queue(tenant, "Mail", ["send_email"], [approver, approver2])
    email = _email(tenant)
    approval_decide(actor=approver2, request=email, choice="approve", comment="fine")

    response = _client(approver).post(
        f"/approvals/{email.pk}/decide/", {"choice": "reject", "comment": "no"}, **HX
    )

    assert response.status_code == 409
    html = response.content.decode()
    assert f"Request #{email.pk} was already approved by bob-approver at" in html
    assert 'role="alert"' in html
    email.refresh_from_db()
    assert email.status == Status.APPROVED and email.votes.count() == 1


def test_bulk__approves_low_risk__refuses_a_critical_one(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User
) -> None:
    _queue(tenant, "Reads", ["lookup_order"], [approver])
    low = _lookup(tenant, "l1")
    low2 = _lookup(tenant, "l2")
    critical = _refund(tenant)

    response = _client(approver).post(
        "/approvals/bulk/",
        {"ids": [low.pk, low2.pk, critical.pk, 999999], "choice": "approve", "next": "/approvals/"},
        follow=True,
    )

    html = response.content.decode()
    assert f"Approved 2 requests: #{low.pk}, #{low2.pk}." in html
    assert f"#{critical.pk} not approved: #{critical.pk} is critical risk" in html
    assert "#999999 not approved: no such request in your queues." in html
    statuses = dict(ApprovalRequest.objects.values_list("pk", "status"))
    assert statuses == {low.pk: "approved", low2.pk: "approved", critical.pk: "pending"}


def test_bulk__reject_needs_a_comment(tenant: Tenant, agent: Agent, approver: User) -> None:
    _queue(tenant, "Reads", ["lookup_order"], [approver])
    low = _lookup(tenant)
    client = _client(approver)

    refused = client.post("/approvals/bulk/", {"ids": [low.pk], "choice": "reject"}, follow=True)
    nothing = client.post("/approvals/bulk/", {"choice": "approve"}, follow=True)

    assert "Say why they are rejected" in refused.content.decode()
    assert "Select the requests to decide first" in nothing.content.decode()
    low.refresh_from_db()
    assert low.status == Status.PENDING


def test_bulk__comment_with_a_control_character__refused_with_a_message_not_a_500(
    tenant: Tenant, agent: Agent, approver: User
) -> None:
    _queue(tenant, "Reads", ["lookup_order"], [approver])
    low = _lookup(tenant)
    client = _client(approver)

    answer = client.post(
        "/approvals/bulk/",
        {"ids": [low.pk], "choice": "reject", "comment": "ring\x07the bell"},
        follow=True,
    )

    assert answer.status_code == 200
    assert "No control characters" in answer.content.decode()
    low.refresh_from_db()
    assert low.status == Status.PENDING and not low.votes.exists()


def test_inbox__bulk_ticks_only_for_low_risk_the_user_decides(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User
) -> None:
    _queue(tenant, "Reads", ["lookup_order"], [approver])
    low = _lookup(tenant)
    critical = _refund(tenant)
    html = _client(approver).get("/approvals/").content.decode()
    assert f'id="tick-{low.pk}"' in html
    assert f'id="tick-{critical.pk}"' not in html


# --------------------------------------------------------------------------- queue health


def test_health__with_data__charts_and_per_tool_table(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User, approver2: User
) -> None:
    _queue(tenant, "Reads", ["lookup_order"], [approver])
    for index in range(3):
        low = _lookup(tenant, f"l{index}", minutes_ago=30)
        approval_decide(actor=approver, request=low, choice="approve")
    rejected = _lookup(tenant, "l-no", minutes_ago=10)
    approval_decide(actor=approver, request=rejected, choice="reject", comment="no")
    _refund(tenant)

    html = _client(approver).get("/approvals/health/").content.decode()

    assert html.count("data-plotly-figure") == 3
    assert "Is the queue keeping up?" in html
    assert "vendor/plotly/plotly.min.js" in html
    assert 'data-testid="tool-table"' in html
    assert '<td class="mono">lookup_order</td><td>75%</td>' in html
    assert "Time to decision p50" in html
    one_queue = _client(approver).get(f"/approvals/health/?queue={refunds.pk}&hours=6")
    assert one_queue.status_code == 200


def test_health__no_data__empty_state(operator: User, tenant: Tenant) -> None:
    html = _client(operator).get("/approvals/health/?hours=12345").content.decode()
    assert "No approval requests in this period." in html
    assert "data-plotly-figure" not in html


# --------------------------------------------------------------------------- queues


def _queue_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Emails",
        "description": "Customer emails",
        "match_agents": ["refund-agent"],
        "match_tools": "send_*, notify",
        "match_risks": ["write"],
        "position": "10",
        "timeout_s": "1800",
        "sla_s": "300",
        "escalate_after_s": "",
        "escalate_to": "",
        "max_open_per_session": "3",
        "approvers": [],
        "reason": "route mail",
    }
    data.update(overrides)
    return data


def test_queue_list__every_role_reads__operators_get_the_buttons(
    tenant: Tenant, refunds: ApprovalQueue, operator: User, viewer: User, approver: User
) -> None:
    as_operator = _client(operator).get("/approvals/queues/").content.decode()
    as_viewer = _client(viewer).get("/approvals/queues/").content.decode()
    assert "Refunds" in as_operator and "tools issue_refund" in as_operator
    assert "alice-approver, bob-approver" in as_operator
    assert f"/approvals/queues/{refunds.pk}/edit/" in as_operator
    assert "New queue" in as_operator
    assert "Refunds" in as_viewer and "/edit/" not in as_viewer and "New queue" not in as_viewer
    assert _client(approver).get("/approvals/queues/").status_code == 200


def test_queue_create__valid__created_with_approvers(
    tenant: Tenant, agent: Agent, operator: User, approver: User
) -> None:
    response = _client(operator).post(
        "/approvals/queues/new/", _queue_form(approvers=[str(approver.pk)])
    )
    assert response.status_code == 302
    queue = ApprovalQueue.objects.get(name="Emails")
    assert queue.match_tools == ["notify", "send_*"] and queue.match_risks == ["write"]
    assert queue.sla_s == 300 and queue.max_open_per_session == 3
    assert list(queue.approvers.user_set.values_list("username", flat=True)) == ["alice-approver"]


def test_queue_create__form__fieldsets_for_risks_and_approvers(
    tenant: Tenant, agent: Agent, operator: User, approver: User
) -> None:
    html = _client(operator).get("/approvals/queues/new/").content.decode()
    assert "<legend>Approvers</legend>" in html and "<legend>Risks</legend>" in html
    assert "alice-approver" in html
    assert '<select name="match_agents"' in html and "multiple" in html


def test_queue_create__invalid__errors_beside_fields(
    tenant: Tenant, agent: Agent, operator: User, refunds: ApprovalQueue
) -> None:
    response = _client(operator).post(
        "/approvals/queues/new/",
        _queue_form(
            name="refunds",  # taken, case aside
            match_tools="bad tool!",
            timeout_s="5",
            escalate_to=str(refunds.pk),
        ),
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="id_match_tools_error"' in html and "Not a tool name or glob" in html
    assert 'id="id_timeout_s_error"' in html and "Whole seconds from 60" in html
    assert 'id="id_escalate_after_s_error"' in html
    assert not ApprovalQueue.objects.filter(name="Emails").exists()
    taken = _client(operator).post("/approvals/queues/new/", _queue_form(name="REFUNDS"))
    assert "already has this name" in taken.content.decode()


def test_queue_edit__stale__says_who_changed_it(
    tenant: Tenant, agent: Agent, operator: User, refunds: ApprovalQueue, approver: User
) -> None:
    client = _client(operator)
    form = _queue_form(
        name="Refunds",
        match_tools="issue_refund",
        match_risks=[],
        approvers=[str(approver.pk)],
        expected_version=str(refunds.version),
    )
    queue_update(actor=ACTOR, queue=refunds, data={**refunds.snapshot(), "escalate_to": None})

    stale = client.post(f"/approvals/queues/{refunds.pk}/edit/", form)

    html = stale.content.decode()
    assert stale.status_code == 200
    assert "was changed" in html and "Nothing was changed" in html
    refunds.refresh_from_db()
    assert refunds.sla_s == 600
    assert f'name="expected_version" value="{refunds.version}"' in html
    saved = client.post(
        f"/approvals/queues/{refunds.pk}/edit/", {**form, "expected_version": refunds.version}
    )
    assert saved.status_code == 302
    refunds.refresh_from_db()
    assert refunds.sla_s == 300
    assert [u.username for u in refunds.approvers.user_set.all()] == ["alice-approver"]


def test_queue_delete__in_use__refused_with_the_reason__unused__deleted(
    tenant: Tenant, agent: Agent, operator: User, refunds: ApprovalQueue
) -> None:
    _refund(tenant)
    unused = _queue(tenant, "Spare", ["nothing_*"], [])
    client = _client(operator)

    refused = client.post(f"/approvals/queues/{refunds.pk}/delete/", {"reason": "tidy"})
    deleted = client.post(f"/approvals/queues/{unused.pk}/delete/", {"reason": "tidy"})

    assert refused.status_code == 200
    assert "requests were routed here and keep it for their record" in refused.content.decode()
    assert ApprovalQueue.objects.filter(pk=refunds.pk).exists()
    assert deleted.status_code == 302
    assert not ApprovalQueue.objects.filter(pk=unused.pk).exists()


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("viewer", False), ("approver", False), ("operator", True), ("admin", True)],
)
def test_queue_pages__permissions(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, role: str, allowed: bool
) -> None:
    from apps.core.roles import Role

    user = make_user(Role(role.capitalize()), tenant, username=f"u-{role}")
    client = _client(user)
    urls = [
        ("get", "/approvals/queues/new/"),
        ("get", f"/approvals/queues/{refunds.pk}/edit/"),
        ("get", f"/approvals/queues/{refunds.pk}/delete/"),
        ("post", "/approvals/queues/new/"),
    ]
    for method, url in urls:
        status = getattr(client, method)(url, _queue_form() if method == "post" else None)
        assert (status.status_code != 403) is allowed, (method, url, status.status_code)
    assert ApprovalQueue.objects.filter(name="Emails").exists() is allowed


def test_runtime_text__hostile__shown_as_text(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User
) -> None:
    payload = '<script>window.__xss = 1</script>"><img src=x onerror=alert(1)>{{ 7*7 }}'
    hostile = _open(
        tenant,
        "h1",
        arguments={"order_id": payload, "amount": 1, "note": {payload: [payload]}},
        reason=payload,
        excerpt=[{"role": "user", "content": payload}],
        requested_by=payload[:200],
    )
    client = _client(approver)

    page = client.get(f"/approvals/?request={hostile.pk}").content.decode()
    pane = client.get(f"/approvals/{hostile.pk}/", **HX).content.decode()
    polled = client.get("/approvals/list/").content.decode()

    for html in (page, pane, polled):
        assert "<script>window" not in html and "<img src=x" not in html
        assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html
    assert "{{ 7*7 }}" in pane  # template syntax stays text
