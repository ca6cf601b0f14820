"""``POST /api/runtime/v1/budgets/reserve`` and ``…/settle`` over HTTP with a runtime token,
through the real ASGI application (they are fast-path action routes), and the snapshot's
``budgets`` a runtime receives."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from apps.accounts.runtime_tokens import runtime_token_create
from apps.budgets.models import Reservation
from apps.runtimes.snapshot import snapshot_content
from apps.tenancy.models import Agent, Tenant

from .conftest import ACTOR, make_daily

RESERVE = "/api/runtime/v1/budgets/reserve"
SETTLE = "/api/runtime/v1/budgets/settle"


class Client:
    """POSTs JSON to the test server with a runtime token."""

    def __init__(self, base: str, raw: str | None) -> None:
        self.base, self.raw = base, raw

    def post(
        self, path: str, data: Any, format: str = "json", content_type: str = ""
    ) -> requests.Response:
        headers = {"Authorization": self.raw} if self.raw else {}
        if isinstance(data, bytes):
            headers["Content-Type"] = content_type
            return requests.post(self.base + path, data=data, headers=headers, timeout=10)
        return requests.post(self.base + path, json=data, headers=headers, timeout=10)


@pytest.fixture
def client(asgi_server: str, token_and_raw) -> Client:  # type: ignore[no-untyped-def]
    return Client(asgi_server, token_and_raw[1])


def body(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "reservation_id": "req-1:step-1",
        "request_id": "req-1",
        "agent": "support-bot",
        "end_user_hash": "9f86d0",
        "estimate": {"cost_usd": "0.40", "tokens": 1200, "tool_calls": 1},
    }
    data.update(fields)
    return data


def test_reserve_then_settle(tenant: Tenant, agent: Agent, client: Client) -> None:
    budget = make_daily(tenant, strict=True, action="block", limits={"cost_usd": "1"})
    granted = client.post(RESERVE, body(), format="json")
    assert granted.status_code == 200
    assert granted.json()["granted"] is True
    assert granted.json()["budgets"] == [{"id": budget.pk, "remaining": {"cost_usd": "0.6"}}]
    refused = client.post(
        RESERVE, body(reservation_id="req-2:1", estimate={"cost_usd": 0.7}), format="json"
    ).json()
    assert refused["granted"] is False and refused["refused_by"]["metric"] == "cost_usd"
    settled = client.post(
        SETTLE, {"reservation_id": "req-1:step-1", "actual": {"cost_usd": "0.38"}}, format="json"
    )
    assert settled.json() == {
        "reservation_id": "req-1:step-1",
        "status": "settled",
        "duplicate": False,
    }
    again = client.post(
        SETTLE, {"reservation_id": "req-1:step-1", "actual": {"cost_usd": "0.38"}}, format="json"
    )
    assert again.json()["duplicate"] is True
    missing = client.post(SETTLE, {"reservation_id": "nope", "actual": {}}, format="json")
    assert missing.status_code == 404


# Bad bodies of every kind, through the same server: tests/budgets/test_hostile.py.


def test_settle_bad_actual__400(tenant: Tenant, agent: Agent, client: Client) -> None:
    make_daily(tenant, strict=True, action="block", limits={"cost_usd": "1"})
    client.post(RESERVE, body(), format="json")
    answer = client.post(
        SETTLE, {"reservation_id": "req-1:step-1", "actual": {"cost_usd": "x"}}, format="json"
    )
    assert answer.status_code == 400 and "actual.cost_usd" in answer.json()["errors"]
    assert Reservation.objects.get().status == "reserved"


def test_unknown_or_other_tenants_agent__404(
    tenant: Tenant, agent: Agent, other_tenant: Tenant, client: Client
) -> None:
    assert client.post(RESERVE, body(agent="ghost"), format="json").status_code == 404
    assert client.post(RESERVE, body(agent="secret-agent"), format="json").status_code == 404


def test_no_token_or_bad_method_or_big_body(tenant: Tenant, agent: Agent, asgi_server: str) -> None:
    anonymous = Client(asgi_server, None)
    assert anonymous.post(RESERVE, body()).status_code == 401
    assert anonymous.post(SETTLE, {"reservation_id": "a", "actual": {}}).status_code == 401
    assert Client(asgi_server, "cprt_nope").post(RESERVE, body()).status_code == 401
    assert requests.get(asgi_server + RESERVE, timeout=5).status_code == 405


def test_body_over_the_limit__413(client: Client) -> None:
    answer = client.post(RESERVE, body(end_user_hash="x" * 70_000))
    assert answer.status_code == 413 and answer.json()["detail"]


def test_other_tenant_cannot_settle_my_reservation(
    tenant: Tenant, agent: Agent, other_tenant: Tenant, client: Client
) -> None:
    make_daily(tenant, strict=True, action="block", limits={"cost_usd": "1"})
    client.post(RESERVE, body(), format="json")
    _, raw = runtime_token_create(
        actor=ACTOR,
        tenant=other_tenant,
        environment=other_tenant.environments.get(),
        name="theirs",
    )
    theirs = Client(client.base, raw)
    answer = theirs.post(SETTLE, {"reservation_id": "req-1:step-1", "actual": {}}, format="json")
    assert answer.status_code == 404
    assert Reservation.objects.get().status == "reserved"


def test_snapshot_lists_the_budgets_in_scope(tenant: Tenant, agent: Agent) -> None:
    other = Agent.objects.create(tenant=tenant, slug="refund-agent", name="Refund agent")
    make_daily(tenant, name="tenant")
    make_daily(tenant, name="mine", scope="agent", agent=agent, window="hour")
    make_daily(tenant, name="theirs", scope="agent", agent=other)
    make_daily(tenant, name="staging", environment=tenant.environments.get(slug="staging"))
    production = tenant.environments.get(slug="production")
    names = [b["name"] for b in snapshot_content(environment=production, agent_id=None)["budgets"]]
    assert names == ["tenant", "mine", "theirs"]
    scoped = snapshot_content(environment=production, agent_id=agent.pk)["budgets"]
    assert [b["name"] for b in scoped] == ["tenant", "mine"]
    mine = scoped[1]
    assert mine["scope"] == "agent" and mine["agent"] == "support-bot" and mine["window"] == "hour"
    assert mine["state"] == "ok" and mine["exhausted_subjects"] == [] and mine["strict"] is False
    assert mine["window_start"].endswith(":00:00Z") and mine["resets_at"].endswith(":00:00Z")


def test_reservation_ids_belong_to_their_environment(
    tenant: Tenant, agent: Agent, client: Client
) -> None:
    make_daily(tenant, strict=True, action="block", limits={"cost_usd": "1"})
    assert client.post(RESERVE, body(), format="json").json()["granted"]
    _, raw = runtime_token_create(
        actor=ACTOR, tenant=tenant, environment=tenant.environments.get(slug="staging"), name="s"
    )
    staging = Client(client.base, raw)
    # another environment of the same tenant: the id names nothing there
    settle = {"reservation_id": "req-1:step-1", "actual": {"cost_usd": "0.1"}}
    assert staging.post(SETTLE, settle).status_code == 404
    # and the same id reserved there is its own reservation, held on its own
    again = staging.post(RESERVE, body()).json()
    assert again["granted"] and again["budgets"][0]["remaining"]["cost_usd"] == "0.2"
    assert Reservation.objects.count() == 2
    assert set(Reservation.objects.values_list("status", flat=True)) == {"reserved"}
