"""Hostile and careless input on every approvals surface: the runtime routes on the fast path
(open, long-poll, cancel) and the operator API (requests, decisions, queues). Every bad value
is a 4xx in the API's one error shape with the field named, stores nothing (no request, vote,
queue or audit event), and is never a 500; what is out of a token's scope is a 404, and the
limits that protect approvers hold under concurrency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_create, runtime_token_revoke
from apps.approvals.models import ApprovalQueue, ApprovalRequest, ApprovalVote, Status
from apps.approvals.services import approval_open, queue_create, queue_update
from apps.audit.models import AuditEvent
from apps.bundles.services import bundle_version_push
from apps.core.roles import Role
from apps.tenancy.models import Agent, Tenant

from ..conftest import api_as
from ..factories import AgentFactory, make_user
from ..races import postgresql_only
from .conftest import ACTOR, CONTRACT, OPEN, Runtime, body, sha

LIST = "/api/v1/approvals/"
QUEUES = "/api/v1/approval-queues/"
SURROGATE = "\\ud800"  # as a JSON escape: json.loads makes a lone surrogate of it


def _stored() -> tuple[int, int, int, int]:
    """What a refused call must leave as it was: requests, votes, queues, audit events."""
    return (
        ApprovalRequest.objects.count(),
        ApprovalVote.objects.count(),
        ApprovalQueue.objects.count(),
        AuditEvent.objects.count(),
    )


def _with_surrogate(document: dict[str, Any]) -> bytes:
    """``document`` as JSON with every "SURROGATE" string turned into a lone surrogate."""
    return json.dumps(document).replace("SURROGATE", SURROGATE).encode()


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def _refused(
    send: Callable[[Any], requests.Response], cases: list[tuple[Any, str]], status: int = 400
) -> list[tuple[Any, int, str]]:
    """Send each ``(payload, field)``; those not answered ``status`` in the error shape with
    an error keyed by ``field`` or a path in it (``""``: any), as (payload, status, text)."""
    wrong = []
    for payload, field in cases:
        response = send(payload)
        ok = response.status_code == status
        if ok:
            answer = response.json()
            ok = set(answer) == {"detail", "errors"}
            if ok and field:
                ok = _keyed(answer["errors"], field)
        if not ok:
            wrong.append((str(payload)[:80], response.status_code, response.text[:200]))
    return wrong


def _keyed(errors: dict[str, Any], field: str) -> bool:
    """Whether an error is keyed by ``field`` or a path inside it (``ids[0]``)."""
    return any(key == field or key.startswith((f"{field}[", f"{field}.")) for key in errors)


def _at_once(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Each call in its own client thread, released together."""
    barrier = threading.Barrier(len(calls))
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def run(call: Callable[[], requests.Response]) -> None:
        barrier.wait()
        answer = call()
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def _token(tenant: Tenant, *, environment: str = "production", agent: Agent | None = None) -> str:
    return runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug=environment),
        agent=agent,
        name=f"hostile-{environment}-{agent.slug if agent else 'all'}",
    )[1]


# ------------------------------------------------------------------ runtime: open


@pytest.mark.django_db(transaction=True)
def test_open__malformed_or_too_deep_bodies__400_nothing_stored(
    runtime: Runtime, refunds: ApprovalQueue
) -> None:
    before = _stored()
    template = json.dumps(body(arguments={"x": 0}, arguments_sha256="a" * 64))
    raws: list[bytes] = [
        b"",
        b"null",
        b"[]",
        b'"text"',
        b"{",
        b"\xff\xfe",
        json.dumps(body()).replace("42.5", "NaN").encode(),
        json.dumps(body()).replace("42.5", "Infinity").encode(),
        json.dumps(body()).replace("42.5", "1e400").encode(),  # parses as an infinite float
        _nested(20_000).encode(),  # under the body size limit, deeper than any parser
        # arguments nested deeper than the stack the hash, redaction and rules walk them with
        *(
            template.replace('{"x": 0}', '{"x": ' + _nested(depth) + "}").encode()
            for depth in (40, 100, 500, 900)
        ),
    ]
    assert _refused(lambda raw: runtime.post(OPEN, raw), [(raw, "") for raw in raws]) == []
    assert _stored() == before


@pytest.mark.django_db(transaction=True)
def test_open__body_over_64_kib__413_nothing_stored(
    runtime: Runtime, refunds: ApprovalQueue
) -> None:
    before = _stored()
    big = body(arguments={"note": "x" * 70_000}, arguments_sha256="a" * 64)
    response = runtime.post(OPEN, big)
    assert response.status_code == 413, response.text
    assert set(response.json()) == {"detail", "errors"}
    assert _stored() == before


@pytest.mark.django_db(transaction=True)
def test_open__text_no_column_can_store__400_keyed_nothing_stored(
    runtime: Runtime, refunds: ApprovalQueue
) -> None:
    """NUL (PostgreSQL text and jsonb refuse it), lone surrogates (no UTF-8 text holds them),
    control characters (they hide what the approver reads): each refused by field."""
    before = _stored()
    cases: list[tuple[Any, str]] = []
    for bad in ("a\x00b", "a\x1b[31mb", "a\x07", "SURROGATE"):
        for field in ("reason", "rule", "requested_by"):
            cases.append((body(**{field: bad}), field))
        cases.append((body(excerpt=[{"role": "user", "content": bad}]), "excerpt[0]"))
    cases += [
        (body(arguments={"order_id": "A\x00", "amount": 1}), "arguments"),
        (body(arguments={"o\x00": "A", "amount": 1}), "arguments"),
        ({**body(), "arguments": {"order_id": "SURROGATE", "amount": 1}}, "arguments"),
        ({**body(), "arguments": {"SURROGATE": "A", "amount": 1}}, "arguments"),
    ]

    def send(document: dict[str, Any]) -> requests.Response:
        return runtime.post(OPEN, _with_surrogate(document))

    assert _refused(send, cases) == []
    assert _stored() == before


@pytest.mark.django_db(transaction=True)
def test_open__wrong_types_and_values__400_keyed_nothing_stored(
    runtime: Runtime, refunds: ApprovalQueue
) -> None:
    before = _stored()
    wrong = [1, True, [], {}, 1.5, ["x"], "x" * 3000]
    required = ["idempotency_key", "agent", "tool", "arguments", "arguments_sha256", "session_id"]
    optional = ["risk", "reason", "excerpt", "bundle_version", "request_id", "rule"]
    # valid: no arguments (refused on the hash alone), no excerpt, version 1 (it exists)
    fine = {("arguments", "{}"), ("excerpt", "[]"), ("bundle_version", "1")}
    cases: list[tuple[Any, str]] = []
    for field in required:
        cases += [
            ({**body(), field: value}, field)
            for value in [None, "", *wrong]
            if (field, json.dumps(value)) not in fine
        ]
        cases.append(({k: v for k, v in body().items() if k != field}, field))
    for field in [*optional, "requested_by", "runtime_id"]:
        cases += [
            ({**body(), field: value}, field)
            for value in wrong
            if (field, json.dumps(value)) not in fine
        ]
    digest = sha({"order_id": "A-1001", "amount": 42.5})
    cases += [
        (body(arguments_sha256=digest.upper()), "arguments_sha256"),
        (body(arguments_sha256=digest + "\n"), "arguments_sha256"),
        (body(arguments_sha256="b" * 64), "arguments_sha256"),  # not the arguments' hash
        (body(idempotency_key="k\n"), "idempotency_key"),
        (body(idempotency_key="a b"), "idempotency_key"),
        (body(idempotency_key="x" * 129), "idempotency_key"),
        (body(session_id="s\u0663"), "session_id"),
        (body(agent="refund-\u0430gent"), "agent"),  # a Cyrillic a
        (body(agent="refund-agent\n"), "agent"),
        (body(agent="\uff52efund-agent"), "agent"),  # a full-width r
        (body(tool="issue_refund\n"), "tool"),
        (body(risk="CRITICAL"), "risk"),
        (body(bundle_version=0), "bundle_version"),
        (body(bundle_version=-1), "bundle_version"),
        (body(bundle_version=2**31), "bundle_version"),
        (body(bundle_version=99), "bundle_version"),  # no such version of this agent
        (body(excerpt=[{"role": "user", "content": "x", "extra": 1}]), "excerpt[0]"),
        (body(excerpt=[{"role": "root", "content": "x"}]), "excerpt[0]"),
        (body(excerpt=[{"role": "user"}]), "excerpt[0]"),
        (body(excerpt=[{"role": "user", "content": "x" * 2001}]), "excerpt[0]"),
        (body(excerpt=[{"role": "user", "content": "x"}] * 21), "excerpt"),
        (body(reason="x" * 2001), "reason"),
        (body(rule="x" * 201), "rule"),
        (body(requested_by="x" * 255), "requested_by"),
        ({**body(), "arguments": {"n": 2**60}}, "arguments"),  # beyond I-JSON: no hash
    ]
    assert _refused(lambda document: runtime.post(OPEN, document), cases) == []
    assert _stored() == before


@pytest.mark.django_db(transaction=True)
def test_open__out_of_the_tokens_scope__404_or_409_nothing_leaked(
    runtime: Runtime,
    refunds: ApprovalQueue,
    tenant: Tenant,
    other_tenant: Tenant,
    agent: Agent,
    asgi_server: str,
) -> None:
    other_agent = AgentFactory(tenant=tenant, slug="other-agent", name="Other agent")
    bundle_version_push(actor=ACTOR, agent=other_agent, content=CONTRACT, message="1")
    bundle_version_push(
        actor=ACTOR, agent=other_agent, content={**CONTRACT, "description": "v2"}, message="2"
    )
    mine = runtime.post(OPEN, body()).json()
    scoped = Runtime(asgi_server, _token(tenant, agent=other_agent))
    before = _stored()
    # an agent the token does not hold: another agent of the tenant, another tenant's agent
    for runtime_, slug in [(scoped, "refund-agent"), (runtime, "secret-agent")]:
        response = runtime_.post(OPEN, body(agent=slug, idempotency_key=f"new-{slug}"))
        assert response.status_code == 404, response.text
    # another agent's idempotency key: neither its request nor what it asked is told
    for runtime_ in (scoped, runtime):
        response = runtime_.post(OPEN, body(agent="other-agent"))
        assert response.status_code == 409, response.text
        assert f"#{mine['id']}" not in response.text and "issue_refund" not in response.text
    # the number of a version only another agent has
    response = runtime.post(OPEN, body(bundle_version=2, idempotency_key="v2"))
    assert response.status_code == 400 and "bundle_version" in response.json()["errors"]
    assert _stored() == before


# ------------------------------------------------------------------ runtime: read, cancel


@pytest.mark.django_db(transaction=True)
def test_read_and_cancel__garbage_ids__404_nothing_changed(
    runtime: Runtime, refunds: ApprovalQueue
) -> None:
    pk = str(runtime.post(OPEN, body()).json()["id"])
    arabic = pk.translate(
        str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")
    )
    # each would name the request if read as a number by a lenient parser
    idents = [f"-{pk}", f"{pk}e0", f"{pk}.0", f"+{pk}", f" {pk}", f"{pk}%0a", f"{pk}%00", arabic]
    idents += ["0", "9" * 20, "\u00b9", "1e3", "%00", "-1"]
    before = _stored()
    wrong = []
    for ident in idents:
        for response in (
            runtime.get(f"{OPEN}/{ident}"),
            runtime.get(f"{OPEN}/{ident}?wait=0.1"),
            runtime.post(f"{OPEN}/{ident}/cancel", {}),
        ):
            if response.status_code != 404 or set(response.json()) != {"detail", "errors"}:
                wrong.append((ident, response.status_code, response.text[:120]))
    assert wrong == []
    assert ApprovalRequest.objects.get().status == Status.PENDING
    assert _stored() == before


@pytest.mark.django_db(transaction=True)
def test_read__bad_wait__400(runtime: Runtime, refunds: ApprovalQueue) -> None:
    opened = runtime.post(OPEN, body()).json()
    wrong = []
    for wait in ["nan", "NaN", "inf", "-inf", "-1", "1e309", "abc", "0x1", "61", "60.0001", "%00"]:
        response = runtime.get(f"{OPEN}/{opened['id']}?wait={wait}")
        if response.status_code != 400 or "wait" not in response.json()["errors"]:
            wrong.append((wait, response.status_code, response.text[:120]))
    assert wrong == []
    for wait in ["", "0", "-0"]:  # no wait: the state at once
        assert runtime.get(f"{OPEN}/{opened['id']}?wait={wait}").json()["status"] == "pending"


@pytest.mark.django_db(transaction=True)
def test_cancel__bad_bodies__400_still_pending_nothing_audited(
    runtime: Runtime, refunds: ApprovalQueue
) -> None:
    opened = runtime.post(OPEN, body()).json()
    path = f"{OPEN}/{opened['id']}/cancel"
    before = _stored()
    cases: list[tuple[Any, str]] = [
        ({"reason": value}, "reason")
        for value in [0, False, [], {}, 5, 1.5, ["x"], "x" * 501, "a\x00", "a\x07", "SURROGATE"]
    ]
    cases += [(raw, "") for raw in [b"[]", b"null", b'"x"', b"{", _nested(20_000).encode()]]
    cases.append((b'{"reason": NaN}', ""))

    def send(payload: Any) -> requests.Response:
        raw = payload if isinstance(payload, bytes) else _with_surrogate(payload)
        return runtime.post(path, raw)

    assert _refused(send, cases) == []
    assert ApprovalRequest.objects.get().status == Status.PENDING
    assert _stored() == before
    cancelled = runtime.post(path, {"reason": "the user left"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


@pytest.mark.django_db(transaction=True)
def test_other_tokens__cannot_read_wait_or_cancel__404(
    runtime: Runtime,
    refunds: ApprovalQueue,
    tenant: Tenant,
    other_tenant: Tenant,
    asgi_server: str,
) -> None:
    opened = runtime.post(OPEN, body()).json()
    other_agent = AgentFactory(tenant=tenant, slug="other-agent", name="Other agent")
    strangers = {
        "another tenant": _token(other_tenant),
        "another environment": _token(tenant, environment="staging"),
        "another agent": _token(tenant, agent=other_agent),
    }
    before = _stored()
    wrong = []
    for who, raw in strangers.items():
        stranger = Runtime(asgi_server, raw)
        for response in (
            stranger.get(f"{OPEN}/{opened['id']}"),
            stranger.get(f"{OPEN}/{opened['id']}?wait=0.5"),
            stranger.post(f"{OPEN}/{opened['id']}/cancel", {"reason": "mine now"}),
        ):
            if response.status_code != 404 or "issue_refund" in response.text:
                wrong.append((who, response.status_code, response.text[:120]))
    assert wrong == []
    assert ApprovalRequest.objects.get().status == Status.PENDING
    assert _stored() == before
    for response in (
        requests.get(f"{asgi_server}{OPEN}/{opened['id']}", timeout=10),
        requests.get(
            f"{asgi_server}{OPEN}/{opened['id']}",
            headers={"Authorization": "Bearer not-a-token"},
            timeout=10,
        ),
    ):
        assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_wait__token_revoked_meanwhile__ends_401(
    runtime: Runtime, refunds: ApprovalQueue, tenant: Tenant, asgi_server: str
) -> None:
    opened = runtime.post(OPEN, body()).json()
    raw = _token(tenant)
    waiting = Runtime(asgi_server, raw)
    answers: list[requests.Response] = []
    waiter = threading.Thread(
        target=lambda: answers.append(waiting.get(f"{OPEN}/{opened['id']}?wait=30", timeout=45))
    )
    waiter.start()
    time.sleep(0.5)  # let it start waiting (were it not yet, the 401 comes at once anyway)
    token = RuntimeToken.objects.get(name="hostile-production-all")
    runtime_token_revoke(actor=ACTOR, token=token, reason="leaked in a log")
    waiter.join(timeout=40)
    assert answers and answers[0].status_code == 401, answers
    assert waiting.get(f"{OPEN}/{opened['id']}").status_code == 401


# ------------------------------------------------------------------ runtime: concurrency


def _opener(runtime: Runtime, key: str, session: str) -> Callable[[], requests.Response]:
    return lambda: runtime.post(OPEN, body(idempotency_key=key, session_id=session))


def _limit(queue: ApprovalQueue, max_open: int) -> None:
    queue_update(
        actor=ACTOR,
        queue=queue,
        data={**queue.snapshot(), "escalate_to": None, "max_open_per_session": max_open},
    )


@pytest.mark.django_db(transaction=True)
def test_open__session_flooding_at_once__limit_holds(
    runtime: Runtime, refunds: ApprovalQueue
) -> None:
    postgresql_only()
    _limit(refunds, 3)
    for round_ in range(3):
        session = f"flood-{round_}"
        answers = _at_once([_opener(runtime, f"{session}-{n}", session) for n in range(10)])
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [201] * 3 + [429] * 7, statuses
        refused = next(answer for answer in answers if answer.status_code == 429)
        assert refused.headers["Retry-After"].isdigit()
        assert session in refused.json()["detail"]
        assert ApprovalRequest.objects.filter(session_id=session).count() == 3


@pytest.mark.django_db(transaction=True)
def test_open__same_key_at_once__one_request_never_429(
    runtime: Runtime, refunds: ApprovalQueue
) -> None:
    postgresql_only()
    _limit(refunds, 3)
    for round_ in range(4):
        session = f"retry-{round_}"
        for n in range(2):  # one place left in the session: the retries must not take it twice
            assert runtime.post(OPEN, body(idempotency_key=f"{session}-{n}", session_id=session))
        key = f"{session}-same"
        answers = _at_once([_opener(runtime, key, session)] * 6)
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] * 5 + [201], [(a.status_code, a.text[:100]) for a in answers]
        assert len({answer.json()["id"] for answer in answers}) == 1
        assert ApprovalRequest.objects.filter(idempotency_key=key).count() == 1


# ------------------------------------------------------------------ operator API: requests


def _open(tenant: Tenant, **fields: Any) -> ApprovalRequest:
    return approval_open(
        tenant_id=tenant.pk,
        environment_id=tenant.environments.get(slug="production").pk,
        token_id=None,
        token_agent_id=None,
        token_label="test",
        body=body(**fields),
    ).request


@pytest.mark.django_db
def test_list__garbage_filters__400_keyed(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User
) -> None:
    _open(tenant)
    queries = {
        "status": ["PENDING", "waiting", "%00"],
        "tenant": ["abc", "-1", "9" * 25, "\u00b2", "1.5"],
        "queue": ["abc", "0", "9" * 25],
        "agent": ["x" * 101, "%00"],
        "tool": ["x" * 129],
        "risk": ["low", "CRITICAL", "%00"],
        # seconds ago that no datetime reaches: refused, not an overflow
        "min_age_s": ["-1", "0", "1e3", "1.5", "abc", "999999999999", "9" * 18, str(2**62)],
    }
    client = api_as(approver)
    wrong = []
    for name, values in queries.items():
        for value in values:
            response = client.get(f"{LIST}?{name}={value}")
            if response.status_code != 400 or name not in response.json()["errors"]:
                wrong.append((name, value, response.status_code))
    assert wrong == []
    assert client.get(f"{LIST}?min_age_s=315360000").status_code == 200  # ten years: fine


@pytest.mark.django_db
def test_detail_and_decide__garbage_ids__404_nothing_decided(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User
) -> None:
    _open(tenant)
    before = _stored()
    client = api_as(approver)
    for ident in ["abc", "\u0663", "-1", "9" * 25, "1.0", "0"]:
        assert client.get(f"{LIST}{ident}/").status_code == 404, ident
        decided = client.post(f"{LIST}{ident}/decide/", {"decision": "approve"}, format="json")
        assert decided.status_code == 404, ident
    assert _stored() == before


@pytest.mark.django_db
def test_decide__bad_bodies__400_nothing_decided(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, approver: User
) -> None:
    request = _open(tenant)
    path = f"{LIST}{request.pk}/decide/"
    client = api_as(approver)
    before = _stored()
    bodies: list[Any] = [
        {},
        [],
        "approve",
        {"decision": "APPROVE"},
        {"decision": ["approve"]},
        {"decision": None},
        {"decision": "reject"},  # no reason given
        {"decision": "reject", "comment": "   "},
        {"decision": "reject", "comment": None},
        {"decision": "reject", "comment": {"why": "x"}},
        {"decision": "reject", "comment": "x" * 2001},
        {"decision": "reject", "comment": "no\x00"},
        {"decision": "reject", "comment": "bell\x07"},
    ]
    wrong = [
        (b, r.status_code)
        for b in bodies
        if (r := client.post(path, b, format="json")).status_code != 400
    ]
    raws = [
        '{"decision": "reject", "comment": "' + SURROGATE + '"}',
        '{"decision": "approve", "comment": NaN}',
        _nested(5_000),
        "{",
    ]
    wrong += [
        (raw[:40], r.status_code)
        for raw in raws
        if (r := client.post(path, raw, content_type="application/json")).status_code != 400
    ]
    assert wrong == []
    request.refresh_from_db()
    assert request.status == Status.PENDING and request.approvals == 0
    assert _stored() == before


@pytest.mark.django_db
def test_bulk__bad_bodies__400_nothing_decided(
    tenant: Tenant, agent: Agent, approver: User
) -> None:
    queue_create(actor=ACTOR, tenant=tenant, data={"name": "All", "approvers": [approver]})
    low = _open(tenant, tool="lookup_order", arguments={"id": 1}, idempotency_key="low")
    client = api_as(approver)
    before = _stored()
    bodies: list[tuple[Any, str]] = [
        ({"ids": list(range(1, 10_001)), "decision": "approve"}, "ids"),
        ({"ids": [], "decision": "approve"}, "ids"),
        ({"ids": str(low.pk), "decision": "approve"}, "ids"),
        ({"ids": [True], "decision": "approve"}, "ids[0]"),
        ({"ids": [1.5], "decision": "approve"}, "ids[0]"),
        ({"ids": [-1], "decision": "approve"}, "ids[0]"),
        ({"ids": [2**63], "decision": "approve"}, "ids[0]"),
        ({"ids": [None], "decision": "approve"}, "ids[0]"),
        ({"ids": [low.pk], "decision": "maybe"}, "decision"),
        ({"ids": [low.pk]}, "decision"),
        # a reject without its reason is refused for all at once, not once per request
        ({"ids": [low.pk], "decision": "reject"}, "comment"),
        ({"ids": [low.pk], "decision": "reject", "comment": "  "}, "comment"),
        ({"ids": [low.pk], "decision": "reject", "comment": "bell\x07"}, "comment"),
    ]
    wrong = []
    for payload, field in bodies:
        response = client.post(f"{LIST}decide/", payload, format="json")
        if response.status_code != 400 or not _keyed(response.json()["errors"], field):
            wrong.append((str(payload)[:60], response.status_code, response.content[:150]))
    assert wrong == []
    low.refresh_from_db()
    assert low.status == Status.PENDING
    assert _stored() == before


@pytest.mark.django_db
def test_bulk__duplicates_and_other_tenants_ids__decided_once_others_untouched(
    tenant: Tenant, other_tenant: Tenant, agent: Agent, approver: User
) -> None:
    queue_create(actor=ACTOR, tenant=tenant, data={"name": "All", "approvers": [approver]})
    low = _open(tenant, tool="lookup_order", arguments={"id": 1}, idempotency_key="low")
    AgentFactory(tenant=other_tenant, slug="refund-agent", name="Theirs")
    foreign = approval_open(
        tenant_id=other_tenant.pk,
        environment_id=other_tenant.environments.get(slug="production").pk,
        token_id=None,
        token_agent_id=None,
        token_label="test",
        body=body(tool="lookup_order", arguments={"id": 1}, idempotency_key="low"),
    ).request
    answer = api_as(approver).post(
        f"{LIST}decide/",
        {"ids": [low.pk, low.pk, foreign.pk, low.pk, 10**12], "decision": "approve"},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["decided"] == [low.pk]
    assert set(answer.json()["refused"]) == {str(foreign.pk), str(10**12)}
    assert ApprovalVote.objects.filter(request=low).count() == 1
    foreign.refresh_from_db()
    assert foreign.status == Status.PENDING and not foreign.votes.exists()


# ------------------------------------------------------------------ operator API: queues


@pytest.fixture
def strangers(tenant: Tenant, other_tenant: Tenant) -> dict[str, User]:
    inactive = make_user(Role.APPROVER, tenant, username="ivy-inactive")
    inactive.is_active = False
    inactive.save()
    return {
        "other tenant": make_user(Role.APPROVER, other_tenant, username="gus-globex"),
        "inactive": inactive,
        "viewer": make_user(Role.VIEWER, tenant, username="vera-viewer"),
    }


@pytest.mark.django_db
def test_queue_create__hostile_names__400_nothing_stored(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, operator: User
) -> None:
    names: list[Any] = [
        "",
        "   ",
        "x" * 101,
        "x" * 10_240,
        "nul\x00",
        "bell\x07",
        "esc\x1b[31m",
        "zero\u200bwidth",
        "evil\u202eexe",
        "bom\ufeff",
        "Refunds",
        " REFUNDS ",
        "\uff32\uff45\uff46\uff55\uff4e\uff44\uff53",  # full-width "Refunds"
        "R\u0435funds",  # a Cyrillic ie for the e
        "Re\u0301funds",  # a combining accent, not NFC
        None,
        ["Refunds"],
        {"name": "x"},
    ]
    client = api_as(operator)
    before = _stored()
    wrong = []
    for name in names:
        response = client.post(QUEUES, {"tenant": tenant.pk, "name": name}, format="json")
        if response.status_code != 400 or "name" not in response.json()["errors"]:
            wrong.append((repr(name)[:40], response.status_code, response.content[:150]))
    response = client.post(
        QUEUES,
        f'{{"tenant": {tenant.pk}, "name": "{SURROGATE}"}}',
        content_type="application/json",
    )
    if response.status_code != 400:
        wrong.append(("surrogate", response.status_code, response.content[:150]))
    assert wrong == []
    assert _stored() == before


@pytest.mark.django_db
def test_queue_create__bad_fields__400_keyed_nothing_stored(
    tenant: Tenant,
    other_tenant: Tenant,
    agent: Agent,
    refunds: ApprovalQueue,
    operator: User,
    strangers: dict[str, User],
) -> None:
    queue_create(actor=ACTOR, tenant=other_tenant, data={"name": "Secret"})
    cases: list[tuple[dict[str, Any], str]] = [
        ({"match_tools": ["a b"]}, "match_tools"),
        ({"match_tools": ["../x"]}, "match_tools"),
        ({"match_tools": ["x" * 65]}, "match_tools"),
        ({"match_tools": ["x"] * 51}, "match_tools"),
        ({"match_tools": "issue_*"}, "match_tools"),
        ({"match_tools": ["issue\x00"]}, "match_tools"),
        ({"match_agents": ["secret-agent"]}, "match_agents"),  # another tenant's
        ({"match_agents": ["refund-\u0430gent"]}, "match_agents"),
        ({"match_risks": ["CRITICAL"]}, "match_risks"),
        ({"match_risks": "critical"}, "match_risks"),
        ({"approvers": ["gus-globex"]}, "approvers"),
        ({"approvers": ["ivy-inactive"]}, "approvers"),
        ({"approvers": ["vera-viewer"]}, "approvers"),
        ({"approvers": ["nobody-at-all"]}, "approvers"),
        ({"approvers": ["ALICE-APPROVER"]}, "approvers"),
        ({"approvers": "alice-approver"}, "approvers"),
        ({"approvers": ["x" * 151]}, "approvers"),
        ({"escalate_to": "Secret", "escalate_after_s": 600}, "escalate_to"),  # another tenant's
        ({"escalate_to": "Refunds"}, "escalate_after_s"),
        ({"escalate_after_s": 600}, "escalate_to"),
        ({"escalate_to": "Refunds", "escalate_after_s": 3600}, "escalate_after_s"),
        ({"escalate_to": "Refunds", "escalate_after_s": 59}, "escalate_after_s"),
        ({"escalate_to": ["Refunds"], "escalate_after_s": 600}, "escalate_to"),
        ({"description": "x" * 2001}, "description"),
        ({"description": "nul\x00"}, "description"),
        ({"description": "esc\x1b[2J"}, "description"),
        ({"reason": "nul\x00"}, "reason"),
        ({"tenant": "abc"}, "tenant"),
        ({"tenant": 2**63}, "tenant"),
        ({"tenant": None}, "tenant"),
    ]
    for field, low, high in [
        ("timeout_s", 60, 7 * 24 * 3600),
        ("sla_s", 10, 7 * 24 * 3600),
        ("max_open_per_session", 1, 1000),
        ("position", 0, 10_000),
    ]:
        for value in [low - 1, high + 1, 2**31, 2**31 - 1, -1, 1.5, True, None, "abc", [low]]:
            cases.append(({field: value}, field))
    client = api_as(operator)
    before = _stored()
    wrong = []
    for fields, key in cases:
        payload = {"tenant": tenant.pk, "name": "Hostile", **fields}
        response = client.post(QUEUES, payload, format="json")
        if response.status_code != 400 or not _keyed(response.json()["errors"], key):
            wrong.append((str(fields)[:60], response.status_code, response.content[:150]))
    assert wrong == []
    assert _stored() == before
    # another tenant's id: not found, as if it did not exist
    foreign = client.post(QUEUES, {"tenant": other_tenant.pk, "name": "Mine"}, format="json")
    assert foreign.status_code == 404
    assert _stored() == before


@pytest.mark.django_db
def test_queue_approvers__unknown_and_other_tenants_users_answer_alike(
    tenant: Tenant, agent: Agent, operator: User, strangers: dict[str, User]
) -> None:
    """The refusal tells an operator nothing about which usernames exist in other tenants."""
    client = api_as(operator)

    def refusal(username: str) -> str:
        response = client.post(
            QUEUES, {"tenant": tenant.pk, "name": "Q", "approvers": [username]}, format="json"
        )
        assert response.status_code == 400
        return str(response.json()["errors"]["approvers"]).replace(username, "NAME")

    assert refusal("gus-globex") == refusal("nobody-at-all")


@pytest.mark.django_db
def test_queue_change__bad_input__400_nothing_changed(
    tenant: Tenant, agent: Agent, refunds: ApprovalQueue, operator: User
) -> None:
    other = queue_create(actor=ACTOR, tenant=tenant, data={"name": "Lookups"})
    path = f"{QUEUES}{refunds.pk}/"
    client = api_as(operator)
    before, snapshot = _stored(), refunds.snapshot()
    patches: list[dict[str, Any]] = [
        {"expected_version": -1},
        {"expected_version": 2**31},
        {"expected_version": True},
        {"expected_version": 1.5},
        {"expected_version": None},
        {"expected_version": "one"},
        {"name": ""},
        {"name": "LOOKUPS"},
        {"name": "L\u043eokups"},  # a Cyrillic o
        {"name": "x" * 10_240},
        {"escalate_to": "Refunds", "escalate_after_s": 600},  # itself
        {"timeout_s": 2**31},
        {"timeout_s": -1},
        {"timeout_s": 1.5},
        {"timeout_s": True},
        {"max_open_per_session": 0},
        {"approvers": None},
        {"approvers": ["gus-globex"]},
    ]
    wrong = []
    for patch in patches:
        response = client.patch(path, patch, format="json")
        if response.status_code != 400 or not response.json()["errors"]:
            wrong.append((str(patch)[:60], response.status_code, response.content[:150]))
    for header in ['"abc"', 'W/"1"', "garbage", '"1", "2"', '"99999999999"']:
        response = client.patch(path, {"sla_s": 60}, format="json", HTTP_IF_MATCH=header)
        if response.status_code not in (400, 412):
            wrong.append((header, response.status_code, response.content[:150]))
    for stale in [{"expected_version": 0}, {"expected_version": 2}]:
        if (
            response := client.patch(path, {"sla_s": 60, **stale}, format="json")
        ).status_code != 409:
            wrong.append((str(stale), response.status_code, response.content[:150]))
    # escalating in a loop: Lookups -> Refunds, then Refunds -> Lookups
    queue_update(
        actor=ACTOR,
        queue=other,
        data={**other.snapshot(), "escalate_to": refunds, "escalate_after_s": 600},
    )
    before = _stored()
    response = client.patch(
        path, {"escalate_to": "lookups", "escalate_after_s": 600}, format="json"
    )
    if response.status_code != 400 or "escalate_to" not in response.json()["errors"]:
        wrong.append(("loop", response.status_code, response.content[:150]))
    assert wrong == []
    refunds.refresh_from_db()
    assert refunds.snapshot() == snapshot and refunds.version == 1
    assert _stored() == before


@pytest.mark.django_db
def test_queue_mutations__other_tenants_operator__404_nothing_changed(
    tenant: Tenant, other_tenant: Tenant, agent: Agent, refunds: ApprovalQueue
) -> None:
    outsider = make_user(Role.OPERATOR, other_tenant, username="oscar-outsider")
    client = api_as(outsider)
    path = f"{QUEUES}{refunds.pk}/"
    before = _stored()
    assert client.get(path).status_code == 404
    assert client.patch(path, {"sla_s": 60}, format="json").status_code == 404
    assert client.put(path, {"name": "Mine"}, format="json").status_code == 404
    assert client.delete(path).status_code == 404
    assert _stored() == before
