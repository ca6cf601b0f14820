"""The operator API under /api/v1/: flags CRUD, toggle, import, segments and kill switches.
Bad input is a 400 with errors by field and stores nothing; roles and tenants are enforced."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from django.db.models import Model
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.flags.models import Flag, KillSwitch, Segment
from apps.flags.services import kill_switch_engage, segment_create
from apps.tenancy.models import Environment, Tenant

from ..api_permissions import APIViewTestCases
from ..conftest import api_as
from ..factories import AgentFactory
from .conftest import SYSTEM, make_flag, revision_of

pytestmark = pytest.mark.django_db


def _state() -> tuple[int, int, int, int, list[int]]:
    return (
        Flag.objects.count(),
        Segment.objects.count(),
        KillSwitch.objects.count(),
        AuditEvent.objects.count(),
        list(Environment.objects.order_by("pk").values_list("revision", flat=True)),
    )


# ------------------------------------------------------------ validation through the API


def test_api_flag_create__valid__201_stored_audited_revision_bumped(
    operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    before = revision_of(development)

    response = api_as(operator).post(
        "/api/v1/flags/",
        {
            "environment": development.pk,
            "name": "support-bot.new-refund-flow",
            "type": "release",
            "enabled": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "10", "stickiness": "sessionId"},
                }
            ],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["strategies"][0]["parameters"]["groupId"] == "support-bot.new-refund-flow"
    assert revision_of(development) == before + 1
    assert AuditEvent.objects.filter(action="flag.created", actor_id=operator.pk).count() == 1


BAD_CREATE = {
    "strategy parameter out of range": (
        {"strategies": [{"name": "flexibleRollout", "parameters": {"rollout": "250"}}]},
        "strategies.0.parameters.rollout",
    ),
    "constraint operator unknown": (
        {
            "strategies": [
                {
                    "name": "default",
                    "constraints": [{"contextName": "userId", "operator": "LIKE", "values": ["1"]}],
                }
            ]
        },
        "strategies.0.constraints.0.operator",
    ),
    "constraint semver invalid": (
        {
            "strategies": [
                {
                    "name": "default",
                    "constraints": [{"contextName": "v", "operator": "SEMVER_LT", "value": "one"}],
                }
            ]
        },
        "strategies.0.constraints.0.value",
    ),
    "variant weight invalid": (
        {"variants": [{"name": "a", "weight": "heavy", "weightType": "fix"}]},
        "variants.0.weight",
    ),
    "variant payload type": (
        {"variants": [{"name": "a", "payload": {"type": "yaml", "value": "a: 1"}}]},
        "variants.0.payload.type",
    ),
    "segment missing": (
        {"strategies": [{"name": "default", "segments": [5]}]},
        "strategies.0.segments.0",
    ),
    "dependency missing": ({"dependencies": [{"feature": "ghost"}]}, "dependencies.0.feature"),
    "type unknown": ({"type": "canary"}, "type"),
    "name reserved": ({"name": "kill.agent.x"}, "name"),
    "name with space": ({"name": "new checkout"}, "name"),
    "strategies not a list": ({"strategies": "default"}, "strategies"),
}


@pytest.mark.parametrize("case", list(BAD_CREATE))
def test_api_flag_create__bad_input__400_field_errors_nothing_stored(
    case: str, operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    changes, field = BAD_CREATE[case]
    before = _state()

    response = api_as(operator).post(
        "/api/v1/flags/",
        {"environment": development.pk, "name": "checkout", **changes},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert response.json()["detail"]
    assert _state() == before


def test_api_flag_update__bad_input__400_and_flag_unchanged(
    operator, development: Environment
) -> None:  # type: ignore[no-untyped-def]
    flag = make_flag(development, "checkout")
    before = _state()

    response = api_as(operator).patch(
        f"/api/v1/flags/{flag.pk}/",
        {
            "variants": [
                {"name": "a", "weight": 700, "weightType": "fix"},
                {"name": "a", "weight": 300, "weightType": "fix"},
            ],
        },
        format="json",
    )

    assert response.status_code == 400
    assert "variants.1.name" in response.json()["errors"]
    assert _state() == before


def test_api_flag_toggle__production__reason_required(operator, production: Environment) -> None:  # type: ignore[no-untyped-def]
    flag = make_flag(production, "checkout")
    client = api_as(operator)
    before = _state()

    refused = client.post(f"/api/v1/flags/{flag.pk}/toggle/", {"enabled": False}, format="json")
    assert refused.status_code == 400 and "reason" in refused.json()["errors"]
    assert _state() == before

    done = client.post(
        f"/api/v1/flags/{flag.pk}/toggle/", {"enabled": False, "reason": "incident"}, format="json"
    )
    assert done.status_code == 200 and done.json()["enabled"] is False


def test_api_flag_delete__removes_and_audits(operator, development: Environment) -> None:  # type: ignore[no-untyped-def]
    flag = make_flag(development, "checkout")
    response = api_as(operator).delete(
        f"/api/v1/flags/{flag.pk}/", {"reason": "cleanup"}, format="json"
    )
    assert response.status_code == 204
    assert not Flag.objects.exists()
    assert AuditEvent.objects.get(action="flag.deleted").reason == "cleanup"


def test_api_flag_list__filtered_by_environment_and_usage(
    viewer, development: Environment, production: Environment
) -> None:  # type: ignore[no-untyped-def]
    dev_flag = make_flag(development, "a")
    make_flag(production, "b")
    client = api_as(viewer)

    listed = client.get(f"/api/v1/flags/?environment={development.pk}").json()["results"]
    usage = client.get(f"/api/v1/flags/{dev_flag.pk}/usage/")

    assert [f["name"] for f in listed] == ["a"]
    assert usage.status_code == 200 and usage.json() == {
        "instances": [],
        "hourly": [],
        "variants": [],
    }


# --------------------------------------------------------------------------- roles and tenants

# --------------------------------------------------------------------------- permissions
# The shared suite (tests/api_permissions.py): every role, expectations from apps.core.roles.


def _environment(tenant: Tenant) -> Environment:
    return tenant.environments.order_by("position")[0]


class TestFlagAPIPermissions(APIViewTestCases.APIViewTestCase):
    model = Flag
    list_url = "/api/v1/flags/"
    update_data = {"description": "changed", "reason": "r"}

    def make_object(self, tenant: Tenant) -> Flag:
        return make_flag(_environment(tenant), "existing")

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        data = {
            "environment": _environment(tenant).pk,
            "name": "n",
            "strategies": [{"name": "default"}],
            "reason": "r",
        }
        return client.post(self.list_url, data, format="json")

    def delete(self, client: APIClient, obj: Model) -> Any:
        return client.delete(f"{self.detail_url(obj)}?reason=r")


class TestFlagToggleAPIPermissions(APIViewTestCases.UpdateObject):
    model = Flag
    list_url = "/api/v1/flags/"

    def make_object(self, tenant: Tenant) -> Flag:
        return make_flag(_environment(tenant), "existing")

    def update(self, client: APIClient, obj: Model) -> Any:
        data = {"enabled": False, "reason": "r"}
        return client.post(f"{self.detail_url(obj)}toggle/", data, format="json")


class TestFlagImportAPIPermissions(APIViewTestCases.CreateObject):
    model = Flag
    list_url = "/api/v1/flags/"

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        payload = {
            "version": 2,
            "features": [{"name": "imported", "enabled": True, "strategies": []}],
        }
        data = {"environment": _environment(tenant).pk, "payload": payload, "reason": "r"}
        return client.post("/api/v1/flags/import/", data, format="json")


class TestSegmentAPIPermissions(APIViewTestCases.APIViewTestCase):
    model = Segment
    list_url = "/api/v1/segments/"
    update_data = {"description": "changed", "reason": "r"}
    constraints: ClassVar[list[dict[str, Any]]] = [
        {"contextName": "userId", "operator": "IN", "values": ["1"]}
    ]

    def make_object(self, tenant: Tenant) -> Segment:
        return segment_create(
            actor=SYSTEM,
            environment=_environment(tenant),
            name="existing",
            constraints=self.constraints,
            reason="r",
        )

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        data = {
            "environment": _environment(tenant).pk,
            "name": "s",
            "constraints": self.constraints,
            "reason": "r",
        }
        return client.post(self.list_url, data, format="json")

    def delete(self, client: APIClient, obj: Model) -> Any:
        return client.delete(f"{self.detail_url(obj)}?reason=r")


class TestKillSwitchAPIPermissions(
    APIViewTestCases.GetObject,
    APIViewTestCases.ListObjects,
    APIViewTestCases.CreateObject,
    APIViewTestCases.UpdateObject,
):
    model = KillSwitch
    list_url = "/api/v1/kill-switches/"

    def make_object(self, tenant: Tenant) -> KillSwitch:
        agent = AgentFactory(tenant=tenant, slug="refund-agent")
        return kill_switch_engage(
            actor=SYSTEM,
            kind="agent_stopped",
            scope="agent",
            tenant=tenant,
            agent=agent,
            reason="r",
        )

    def prepare_create(self, tenant: Tenant) -> None:
        AgentFactory(tenant=tenant, slug="support-bot")

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        agent = tenant.agents.get(slug="support-bot")
        data = {"kind": "agent_stopped", "scope": "agent", "agent": agent.pk, "reason": "r"}
        return client.post(self.list_url, data, format="json")

    def update(self, client: APIClient, obj: Model) -> Any:
        """Release: the one change a kill switch takes."""
        return client.post(f"{self.detail_url(obj)}release/", {"reason": "r"}, format="json")


def _objects(tenant: Tenant) -> dict[str, Any]:
    env = tenant.environments.order_by("position").first()
    assert env is not None
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    other = AgentFactory(tenant=tenant, slug="refund-agent")
    switch = kill_switch_engage(
        actor=SYSTEM, kind="agent_stopped", scope="agent", tenant=tenant, agent=other, reason="r"
    )
    return {"env": env, "agent": agent, "flag": make_flag(env, "existing"), "switch": switch}


def test_api__other_tenants_flags_segments_switches__404(operator, other_tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    foreign = _objects(other_tenant)
    client = api_as(operator)
    before = _state()

    responses = [
        client.get(f"/api/v1/flags/{foreign['flag'].pk}/"),
        client.patch(
            f"/api/v1/flags/{foreign['flag'].pk}/", {"description": "mine"}, format="json"
        ),
        client.post(
            f"/api/v1/flags/{foreign['flag'].pk}/toggle/", {"enabled": False}, format="json"
        ),
        client.delete(f"/api/v1/flags/{foreign['flag'].pk}/"),
        client.post(
            "/api/v1/flags/", {"environment": foreign["env"].pk, "name": "x"}, format="json"
        ),
        client.post(
            "/api/v1/flags/import/",
            {"environment": foreign["env"].pk, "payload": {"features": []}},
            format="json",
        ),
        client.get(f"/api/v1/flags/?environment={foreign['env'].pk}"),
        client.post(
            "/api/v1/kill-switches/",
            {
                "kind": "agent_stopped",
                "scope": "agent",
                "agent": foreign["agent"].pk,
                "reason": "r",
            },
            format="json",
        ),
        client.post(
            f"/api/v1/kill-switches/{foreign['switch'].pk}/release/", {"reason": "r"}, format="json"
        ),
        client.get(f"/api/v1/kill-switches/{foreign['switch'].pk}/"),
    ]

    assert [r.status_code for r in responses] == [404] * len(responses)
    assert _state() == before
    assert client.get("/api/v1/flags/").json()["results"] == []
    assert client.get("/api/v1/kill-switches/").json()["results"] == []


# --------------------------------------------------------------------------- kill switches


def test_api_kill_switch__engage_then_release__audited(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    client = api_as(operator)

    engaged = client.post(
        "/api/v1/kill-switches/",
        {
            "kind": "agent_mode",
            "scope": "agent",
            "agent": agent.pk,
            "mode": "read_only",
            "reason": "bad writes",
        },
        format="json",
    )
    assert engaged.status_code == 201, engaged.content
    body = engaged.json()
    assert (
        body["status"] == "engaged"
        and body["feature_name"] == "kill.agent.support-bot.mode.read_only"
    )
    assert set(body["engaged_revisions"]) == {str(e.pk) for e in tenant.environments.all()}

    missing_reason = client.post(f"/api/v1/kill-switches/{body['id']}/release/", {}, format="json")
    released = client.post(
        f"/api/v1/kill-switches/{body['id']}/release/", {"reason": "fixed"}, format="json"
    )

    assert missing_reason.status_code == 400 and "reason" in missing_reason.json()["errors"]
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert list(
        AuditEvent.objects.filter(action__startswith="kill_switch.").values_list("action", "reason")
    ) == [("kill_switch.released", "fixed"), ("kill_switch.engaged", "bad writes")]


def test_api_kill_switch__bad_input__400_nothing_stored(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    before = _state()
    response = api_as(operator).post(
        "/api/v1/kill-switches/",
        {"kind": "tool_disabled", "scope": "tenant", "tenant": tenant.pk, "reason": "r"},
        format="json",
    )
    assert response.status_code == 400 and "tool_pattern" in response.json()["errors"]
    assert _state() == before


# --------------------------------------------------------------------------- import


def test_api_import__merge_then_replace(operator, development: Environment) -> None:  # type: ignore[no-untyped-def]
    make_flag(development, "local-only")
    client = api_as(operator)
    payload = {
        "version": 2,
        "segments": [
            {"id": 3, "constraints": [{"contextName": "userId", "operator": "IN", "values": ["1"]}]}
        ],
        "features": [
            {
                "name": "from-unleash",
                "enabled": True,
                "strategies": [{"name": "default", "segments": [3]}],
                "dependencies": [],
            }
        ],
    }

    merged = client.post(
        "/api/v1/flags/import/", {"environment": development.pk, "payload": payload}, format="json"
    )
    assert merged.status_code == 200, merged.content
    assert merged.json()["created"] == ["from-unleash"] and merged.json()["segments_created"] == [3]
    assert set(Flag.objects.values_list("name", flat=True)) == {"local-only", "from-unleash"}

    replaced = client.post(
        "/api/v1/flags/import/",
        {"environment": development.pk, "payload": payload, "mode": "replace"},
        format="json",
    )
    assert replaced.json()["deleted"] == ["local-only"] and replaced.json()["unchanged"] == [
        "from-unleash"
    ]
    assert list(Flag.objects.values_list("name", flat=True)) == ["from-unleash"]
    assert AuditEvent.objects.filter(action="flags.imported").count() == 2


def test_api_import__bad_payload__400_nothing_stored(operator, development: Environment) -> None:  # type: ignore[no-untyped-def]
    before = _state()
    response = api_as(operator).post(
        "/api/v1/flags/import/",
        {
            "environment": development.pk,
            "payload": {
                "version": 2,
                "features": [
                    {"name": "ok", "strategies": []},
                    {
                        "name": "bad",
                        "strategies": [{"name": "default", "parameters": {"x": {"y": 1}}}],
                    },
                    {"name": "ok", "strategies": []},
                ],
            },
        },
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {
        "payload.features.1.strategies.0.parameters.x",
        "payload.features.2.name",
    }
    assert _state() == before
