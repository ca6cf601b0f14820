"""Pushing, reading, exporting versions, evaluations and promotion gates over the API:
idempotency, numbering, permissions by role, tenant isolation, immutability."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import Model
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.audit.services import SystemActor
from apps.bundles import signing
from apps.bundles.models import (
    BundleVersion,
    Evaluation,
    GateRequirement,
    ImmutableError,
    PromotionGate,
)
from apps.bundles.parsing import parse
from apps.bundles.services import bundle_version_push
from apps.core.roles import Role
from apps.tenancy.models import Agent, Environment, Tenant

from ..api_permissions import APIViewTestCases
from ..conftest import api_as
from ..factories import AgentFactory, make_user
from .conftest import as_yaml, demo_content, demo_text, on_postgresql, push, state

pytestmark = pytest.mark.django_db
SYSTEM = SystemActor("system:test")


# --------------------------------------------------------------------------- push


def test_push__new_content__201_v1_signed_and_audited(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    response = push(api_as(operator), agent, demo_text("refund-agent-v1"), message="first release")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["number"] == 1 and body["created"] is True and body["parent"] is None
    assert body["author"] == "olivia-operator" and body["message"] == "first release"
    version = BundleVersion.objects.get()
    assert body["digest"] == version.digest and len(version.digest) == 64
    assert signing.verify(
        version.canonical_bytes, kid=body["signing_key_id"], signature=body["signature"]
    )
    event = AuditEvent.objects.get(action="bundle_version.pushed")
    assert event.reason == "first release" and event.tenant_id == agent.tenant_id
    assert event.after["digest"] == version.digest and event.after["number"] == 1


def test_push__same_content_twice__same_version_nothing_new(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    first = push(client, agent, demo_text("refund-agent-v1"), message="first")
    before = state()

    again = push(client, agent, demo_text("refund-agent-v1"), message="pushed again by CI")
    reformatted = push(
        client, agent, json.dumps(demo_content(), indent=1), content_type="application/json"
    )

    assert again.status_code == reformatted.status_code == 200
    assert again.json()["number"] == reformatted.json()["number"] == first.json()["number"] == 1
    assert again.json()["created"] is False
    assert state() == before


def test_push__changed_content__next_number_with_parent(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    push(client, agent, demo_text("refund-agent-v1"), message="one")
    content = demo_content()
    content["policies"]["limits"]["max_steps"] = 3
    second = push(client, agent, as_yaml(content), message="fewer steps")
    content["policies"]["limits"]["max_steps"] = 4
    third = push(client, agent, as_yaml(content), message="from v1 again", parent="1")

    assert (second.status_code, second.json()["number"], second.json()["parent"]) == (201, 2, 1)
    assert (third.status_code, third.json()["number"], third.json()["parent"]) == (201, 3, 1)
    listed = client.get(f"/api/v1/agents/{agent.pk}/bundles/").json()["results"]
    assert [v["number"] for v in listed] == [3, 2, 1]


def test_push__unknown_parent__400_and_nothing_stored(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    before = state()
    response = push(api_as(operator), agent, demo_text("refund-agent-v1"), parent="7")
    assert response.status_code == 400 and "parent" in response.json()["errors"]
    assert state() == before


def test_push__archived_agent__400(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    from apps.tenancy.services import agent_archive

    agent_archive(actor=SYSTEM, agent=agent, reason="retired")
    response = push(api_as(operator), agent, demo_text("refund-agent-v1"))
    assert response.status_code == 400 and "agent" in response.json()["errors"]
    assert BundleVersion.objects.count() == 0


def test_push__message_in_header__accepted(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    response = api_as(operator).generic(
        "POST",
        f"/api/v1/agents/{agent.pk}/bundles/",
        demo_text("refund-agent-v1"),
        content_type="text/yaml",
        HTTP_X_BUNDLE_MESSAGE="from a header",
    )
    assert response.status_code == 201
    assert response.json()["message"] == "from a header"


# --------------------------------------------------------------------------- read and export


def test_version_detail__content_digest_and_gates(viewer, agent: Agent, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    bundle_version_push(
        actor=SYSTEM, agent=agent, source=demo_text("refund-agent-v1"), message="one"
    )
    body = api_as(viewer).get(f"/api/v1/agents/{agent.pk}/bundles/versions/1/").json()
    assert body["content"] == demo_content()
    assert [g["environment"] for g in body["gates"]] == ["Development", "Staging", "Production"]
    assert all(g["state"] == "none" for g in body["gates"])


def test_export__yaml_and_json__push_back_to_the_same_version(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    client = api_as(operator)
    push(client, agent, demo_text("refund-agent-v1"))
    before = state()
    for suffix, content_type in (("yaml", "application/yaml"), ("json", "application/json")):
        exported = client.get(f"/api/v1/agents/{agent.pk}/bundles/versions/1/bundle.{suffix}")
        assert exported.status_code == 200
        assert exported["Content-Disposition"] == f'attachment; filename="refund-agent-v1.{suffix}"'
        again = push(client, agent, exported.content, content_type=content_type)
        assert (again.status_code, again.json()["number"]) == (200, 1)
    assert state() == before


def test_schema_endpoint__public_and_accepts_the_demo_bundles(api) -> None:  # type: ignore[no-untyped-def]
    response = api.get("/api/v1/schemas/bundle.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["$id"] == "http://testserver/api/v1/schemas/bundle.json"
    jsonschema.Draft202012Validator.check_schema(schema)
    for name in ("support-bot-v1", "support-bot-v2", "refund-agent-v1"):
        jsonschema.Draft202012Validator(schema).validate(parse(demo_text(name), "yaml"))
    bad = demo_content()
    bad["tools"][0]["surprise"] = True
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))


def test_published_schema_file__matches_the_code() -> None:
    from pathlib import Path

    from apps.bundles.schema import bundle_json_schema

    committed = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "bundle.schema.json").read_text()
    )
    assert committed == bundle_json_schema()


def test_validate_endpoint__valid_and_invalid__nothing_stored(viewer) -> None:  # type: ignore[no-untyped-def]
    client = api_as(viewer)
    before = state()
    ok = client.generic(
        "POST",
        "/api/v1/bundles/validate/",
        demo_text("refund-agent-v1"),
        content_type="application/yaml",
    )
    assert ok.status_code == 200 and ok.json()["valid"] is True and len(ok.json()["digest"]) == 64
    content = demo_content()
    content["policies"]["limits"]["max_steps"] = -1
    bad = client.generic(
        "POST", "/api/v1/bundles/validate/", json.dumps(content), content_type="application/json"
    )
    assert bad.status_code == 400 and "/policies/limits/max_steps" in bad.json()["errors"]
    assert state() == before


def test_list__query_count_is_bounded(viewer, agent: Agent, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    content = demo_content()
    for steps in range(1, 13):
        content["policies"]["limits"]["max_steps"] = steps
        bundle_version_push(
            actor=SYSTEM, agent=agent, source=as_yaml(content), message=f"steps {steps}"
        )
    client = api_as(viewer)
    with django_assert_max_num_queries(8):
        response = client.get(f"/api/v1/agents/{agent.pk}/bundles/")
    assert response.json()["count"] == 12


# --------------------------------------------------------------------------- evaluations and gates


def _evaluation(client, agent: Agent, **overrides):  # type: ignore[no-untyped-def]
    body = {
        "suite": "golden",
        "passed": 95,
        "failed": 5,
        "score": 0.95,
        "report_url": "https://ci.example.com/runs/1",
        "run_id": "run-1",
        **overrides,
    }
    return client.post(
        f"/api/v1/agents/{agent.pk}/bundles/versions/1/evaluations/", body, format="json"
    )


def test_evaluations__same_run_twice__kept_once_conflict_refused(operator, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    bundle_version_push(
        actor=SYSTEM, agent=agent, source=demo_text("refund-agent-v1"), message="one"
    )
    client = api_as(operator)
    first = _evaluation(client, agent)
    again = _evaluation(client, agent)
    conflict = _evaluation(client, agent, passed=99, failed=1)
    assert (first.status_code, again.status_code, conflict.status_code) == (201, 200, 400)
    assert first.json()["pass_rate"] == 0.95 and again.json()["id"] == first.json()["id"]
    assert "run_id" in conflict.json()["errors"]
    assert Evaluation.objects.count() == 1
    listed = client.get(f"/api/v1/agents/{agent.pk}/bundles/versions/1/evaluations/").json()
    assert listed["count"] == 1 and listed["results"][0]["suite"] == "golden"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"suite": "Golden Suite!"}, "suite"),
        ({"passed": -1}, "passed"),
        ({"passed": 0, "failed": 0}, "passed"),
        ({"report_url": "javascript:alert(1)"}, "report_url"),
        ({"failed": "many"}, "failed"),
    ],
)
def test_evaluations__bad_input__400_and_nothing_stored(
    operator, agent: Agent, overrides: dict, field: str
) -> None:  # type: ignore[no-untyped-def, type-arg]
    bundle_version_push(
        actor=SYSTEM, agent=agent, source=demo_text("refund-agent-v1"), message="one"
    )
    before = state()
    response = _evaluation(api_as(operator), agent, **overrides)
    assert response.status_code == 400 and field in response.json()["errors"], response.content
    assert state() == before


def test_gate__set_then_version_shows_met_and_failing(
    operator, agent: Agent, tenant: Tenant
) -> None:  # type: ignore[no-untyped-def]
    bundle_version_push(
        actor=SYSTEM, agent=agent, source=demo_text("refund-agent-v1"), message="one"
    )
    client = api_as(operator)
    production = tenant.environments.get(slug="production")
    response = client.put(
        f"/api/v1/environments/{production.pk}/promotion-gate/",
        {
            "requirements": [
                {"suite": "golden", "min_pass_rate": "0.95"},
                {"suite": "adversarial", "min_pass_rate": "0.9"},
            ]
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    assert [r["suite"] for r in response.json()["requirements"]] == ["adversarial", "golden"]

    _evaluation(client, agent)  # golden 95%
    _evaluation(client, agent, suite="adversarial", passed=80, failed=20, run_id="run-2")
    gates = {
        g["environment"]: g
        for g in client.get(f"/api/v1/agents/{agent.pk}/bundles/versions/1/").json()["gates"]
    }
    assert gates["Production"]["state"] == "failing" and gates["Production"]["met"] is False
    assert "adversarial: 80.0% < 90.0% required" in gates["Production"]["summary"]
    assert gates["Staging"]["state"] == "none"

    _evaluation(
        client, agent, suite="adversarial", passed=92, failed=8, run_id="run-3"
    )  # a re-run counts
    gates = {
        g["environment"]: g
        for g in client.get(f"/api/v1/agents/{agent.pk}/bundles/versions/1/").json()["gates"]
    }
    assert gates["Production"]["state"] == "met"


def test_gate__loosening_needs_a_reason(admin, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    client = api_as(admin)
    production = tenant.environments.get(slug="production")
    url = f"/api/v1/environments/{production.pk}/promotion-gate/"
    client.put(url, {"requirements": [{"suite": "golden", "min_pass_rate": "0.95"}]}, format="json")
    before = state()
    refused = client.put(
        url, {"requirements": [{"suite": "golden", "min_pass_rate": "0.5"}]}, format="json"
    )
    assert refused.status_code == 400 and "reason" in refused.json()["errors"]
    assert state() == before
    accepted = client.put(url, {"requirements": [], "reason": "suite retired"}, format="json")
    assert accepted.status_code == 200 and accepted.json()["requirements"] == []
    event = AuditEvent.objects.filter(action="promotion_gate.updated").order_by("-id").first()
    assert (
        event is not None and event.reason == "suite retired" and event.after["requirements"] == []
    )


@pytest.mark.parametrize(
    "loosened",
    [
        [],  # every suite dropped
        [{"suite": "golden", "min_pass_rate": "0.5"}],  # a minimum lowered
        [{"suite": "golden", "min_pass_rate": "0.95"}],  # a suite dropped
        [{"suite": "golden", "min_pass_rate": "0.95"}, {"suite": "other", "min_pass_rate": "1"}],
    ],
)
def test_gate__operator_loosening__403_nothing_changes(  # type: ignore[no-untyped-def]
    operator, tenant: Tenant, loosened: list[dict[str, str]]
) -> None:
    """Loosening a gate is the same decision as deploying past it (an Admin's): an Operator
    who could drop the gate, deploy and put it back would have the override without it."""
    production = tenant.environments.get(slug="production")
    url = f"/api/v1/environments/{production.pk}/promotion-gate/"
    gate = [
        {"suite": "adversarial", "min_pass_rate": "0.9"},
        {"suite": "golden", "min_pass_rate": "0.95"},
    ]
    client = api_as(operator)
    assert client.put(url, {"requirements": gate}, format="json").status_code == 200
    before = state()

    refused = client.put(url, {"requirements": loosened, "reason": "just once"}, format="json")

    assert refused.status_code == 403, refused.content
    assert "loosen" in refused.json()["detail"] and "Admin" in refused.json()["detail"]
    assert state() == before
    # tightening stays an Operator's
    tighter = [{"suite": "adversarial", "min_pass_rate": "0.95"}, *gate[1:]]
    assert client.put(url, {"requirements": tighter}, format="json").status_code == 200


@pytest.mark.parametrize(
    "requirements",
    [
        [{"suite": "golden", "min_pass_rate": "1.5"}],
        [{"suite": "golden", "min_pass_rate": "0.9"}, {"suite": "golden", "min_pass_rate": "0.8"}],
        [{"suite": "Bad Suite", "min_pass_rate": "0.9"}],
    ],
)
def test_gate__bad_requirements__400_and_nothing_stored(
    operator, tenant: Tenant, requirements: list
) -> None:  # type: ignore[no-untyped-def, type-arg]
    production = tenant.environments.get(slug="production")
    before = state()
    response = api_as(operator).put(
        f"/api/v1/environments/{production.pk}/promotion-gate/",
        {"requirements": requirements},
        format="json",
    )
    assert response.status_code == 400
    assert state() == before


def test_gate_list__only_visible_environments(viewer, tenant: Tenant, other_tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    rows = api_as(viewer).get("/api/v1/promotion-gates/").json()["results"]
    assert {r["tenant_slug"] for r in rows} == {"acme"} and len(rows) == 3


# --------------------------------------------------------------------------- permissions

# Writes, for the other-tenant test below.
ACTIONS = {
    "push": lambda c, a, e: push(c, a, as_yaml({**demo_content(), "description": "changed"})),
    "evaluate": lambda c, a, e: _evaluation(c, a, run_id="matrix"),
    "set_gate": lambda c, a, e: c.put(
        f"/api/v1/environments/{e.pk}/promotion-gate/",
        {"requirements": [{"suite": "golden", "min_pass_rate": "0.9"}]},
        format="json",
    ),
}
# The shared suite (tests/api_permissions.py): every role, expectations from apps.core.roles.


def _foreign_or_own_agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="pushed-bot")


class TestBundleVersionAPIPermissions(APIViewTestCases.GetObject, APIViewTestCases.CreateObject):
    model = BundleVersion

    def make_object(self, tenant: Tenant) -> BundleVersion:
        return bundle_version_push(
            actor=SYSTEM,
            agent=_foreign_or_own_agent(tenant),
            source=demo_text("refund-agent-v1"),
            message="one",
        ).version

    def detail_url(self, obj: Model) -> str:
        assert isinstance(obj, BundleVersion)
        return f"/api/v1/agents/{obj.agent_id}/bundles/versions/{obj.number}/"

    def prepare_create(self, tenant: Tenant) -> None:
        _foreign_or_own_agent(tenant)

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        return push(client, tenant.agents.get(slug="pushed-bot"), as_yaml(demo_content()))


class TestEvaluationAPIPermissions(APIViewTestCases.CreateObject):
    model = Evaluation

    def prepare_create(self, tenant: Tenant) -> None:
        bundle_version_push(
            actor=SYSTEM,
            agent=_foreign_or_own_agent(tenant),
            source=demo_text("refund-agent-v1"),
            message="one",
        )

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        return _evaluation(client, tenant.agents.get(slug="pushed-bot"), run_id="suite")


class TestPromotionGateAPIPermissions(
    APIViewTestCases.GetObject, APIViewTestCases.ListObjects, APIViewTestCases.UpdateObject
):
    """Reached by environment: ``make_object`` gives the environment whose gate it is."""

    model = PromotionGate
    list_url = "/api/v1/promotion-gates/"
    id_key = "environment"

    def make_object(self, tenant: Tenant) -> Environment:
        return tenant.environments.order_by("position")[0]

    def detail_url(self, obj: Model) -> str:
        return f"/api/v1/environments/{obj.pk}/promotion-gate/"

    def update(self, client: APIClient, obj: Model) -> Any:
        data = {"requirements": [{"suite": "golden", "min_pass_rate": "0.9"}]}
        return client.put(self.detail_url(obj), data, format="json")


READS = [
    "/api/v1/agents/{a}/bundles/",
    "/api/v1/agents/{a}/bundles/versions/1/",
    "/api/v1/agents/{a}/bundles/versions/1/bundle.yaml",
    "/api/v1/agents/{a}/bundles/versions/1/bundle.json",
    "/api/v1/agents/{a}/bundles/versions/1/evaluations/",
    "/api/v1/agents/{a}/bundles/diff/?from=1&to=1",
    "/api/v1/environments/{e}/promotion-gate/",
]


@pytest.mark.parametrize("url", READS)
def test_reads__viewer__allowed(viewer, agent: Agent, tenant: Tenant, url: str) -> None:  # type: ignore[no-untyped-def]
    bundle_version_push(
        actor=SYSTEM, agent=agent, source=demo_text("refund-agent-v1"), message="one"
    )
    environment = tenant.environments.get(slug="production")
    assert api_as(viewer).get(url.format(a=agent.pk, e=environment.pk)).status_code == 200


@pytest.mark.parametrize("url", READS)
def test_reads__other_tenant__404(operator, other_tenant: Tenant, url: str) -> None:  # type: ignore[no-untyped-def]
    foreign = other_tenant.agents.get()
    bundle_version_push(
        actor=SYSTEM, agent=foreign, source=demo_text("refund-agent-v1"), message="theirs"
    )
    environment = other_tenant.environments.get()
    assert api_as(operator).get(url.format(a=foreign.pk, e=environment.pk)).status_code == 404


def test_writes__other_tenant__404_and_nothing_stored(operator, other_tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    foreign = other_tenant.agents.get()
    bundle_version_push(
        actor=SYSTEM, agent=foreign, source=demo_text("refund-agent-v1"), message="theirs"
    )
    environment = other_tenant.environments.get()
    client = api_as(operator)
    before = state()
    for action in ACTIONS.values():
        assert action(client, foreign, environment).status_code == 404
    assert (
        client.generic(
            "POST",
            f"/api/v1/agents/{foreign.pk}/bundles/?message=x",
            "not: even valid",
            content_type="application/yaml",
        ).status_code
        == 404
    )
    assert state() == before


def test_anonymous__refused_except_public_schema_and_keys(api, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    assert api.get(f"/api/v1/agents/{agent.pk}/bundles/").status_code in (401, 403)
    assert push(api, agent, demo_text("refund-agent-v1")).status_code in (401, 403)
    assert api.get("/api/v1/schemas/bundle.json").status_code == 200
    assert api.get("/api/runtime/v1/keys").status_code == 200
    assert BundleVersion.objects.count() == 0


# --------------------------------------------------------------------------- immutability


def _version() -> BundleVersion:
    agent = AgentFactory()
    return bundle_version_push(
        actor=SYSTEM, agent=agent, source=demo_text("refund-agent-v1"), message="one"
    ).version


ORM_CHANGES = {
    "save": lambda v: (setattr(v, "message", "rewritten"), v.save()),
    "save_update_fields": lambda v: v.save(update_fields=["message"]),
    "queryset_update": lambda v: BundleVersion.objects.filter(pk=v.pk).update(message="rewritten"),
    "delete": lambda v: v.delete(),
    "queryset_delete": lambda v: BundleVersion.objects.filter(pk=v.pk).delete(),
    "bulk_update": lambda v: BundleVersion.objects.bulk_update([v], ["message"]),
}


@pytest.mark.parametrize("change", list(ORM_CHANGES))
def test_version__orm_change__refused(change: str) -> None:
    version = _version()
    with pytest.raises(ImmutableError):
        ORM_CHANGES[change](version)
    assert BundleVersion.objects.get(pk=version.pk).message == "one"


@on_postgresql
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE bundles_bundleversion SET message = 'x'",
        "DELETE FROM bundles_bundleversion",
        "UPDATE bundles_evaluation SET passed = 0",
    ],
)
def test_version__raw_sql_change__refused_by_the_database(sql: str) -> None:
    version = _version()
    Evaluation.objects.create(
        version=version, suite="golden", passed=1, failed=0, created_by_label="t"
    )
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert BundleVersion.objects.get(pk=version.pk).message == "one"


def test_gate_requirements__stored_as_rows(operator, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    staging = tenant.environments.get(slug="staging")
    api_as(operator).put(
        f"/api/v1/environments/{staging.pk}/promotion-gate/",
        {"requirements": [{"suite": "golden", "min_pass_rate": "0.9"}]},
        format="json",
    )
    assert list(GateRequirement.objects.values_list("suite", "min_pass_rate")) == [
        ("golden", Decimal("0.9000"))
    ]


def test_gate_list__tenant_filter__by_id_or_slug_and_404_when_not_visible(  # type: ignore[no-untyped-def]
    admin, tenant: Tenant, other_tenant: Tenant
) -> None:
    client = api_as(admin)
    by_slug = client.get("/api/v1/promotion-gates/", {"tenant": "globex"}).json()["results"]
    by_id = client.get("/api/v1/promotion-gates/", {"tenant": tenant.pk}).json()["results"]
    assert {r["tenant_slug"] for r in by_slug} == {"globex"} and len(by_slug) == 1
    assert {r["tenant_slug"] for r in by_id} == {"acme"} and len(by_id) == 3
    viewer = make_user(Role.VIEWER, tenant)
    response = api_as(viewer).get("/api/v1/promotion-gates/", {"tenant": "globex"})
    assert response.status_code == 404
    too_long = client.get("/api/v1/promotion-gates/", {"tenant": "x" * 501})
    assert too_long.status_code == 400 and list(too_long.json()["errors"]) == ["tenant"]
