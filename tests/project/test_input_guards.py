"""Hostile JSON and values (issue 9, item 5): one request-level guard (size, depth) and one
field-level rule (no NUL, finite numbers, integers within their column) on every endpoint.
Each case: a 4xx that names the field, never a 500, and nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from apps.accounts.runtime_tokens import runtime_token_create
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.core.input_guards import (
    INT64_MAX,
    JSONShapeError,
    json_loads,
    json_problems,
    model_values_problems,
)
from apps.core.roles import Role
from apps.tenancy.models import Environment, Tenant
from tests.bundles.conftest import demo_text
from tests.conftest import api_as
from tests.factories import AgentFactory, make_user
from tests.tables import row_counts

pytestmark = pytest.mark.django_db
ACTOR = SystemActor("test")
NUL = "\x00"


def _rows() -> dict[str, int]:
    """Row count of every model of the project and of auth: a refused request changes none."""
    return row_counts(except_apps={"sessions", "contenttypes", "admin"})


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def world(tenant: Tenant) -> dict[str, Any]:
    production = tenant.environments.get(slug="production")
    agent = AgentFactory(tenant=tenant, slug="support-bot")
    bundle_version_push(actor=ACTOR, agent=agent, source=demo_text("refund-agent-v1"), message="1")
    token = runtime_token_create(actor=ACTOR, tenant=tenant, environment=production, name="f")[1]
    runtime = APIClient()
    runtime.credentials(HTTP_AUTHORIZATION=token)
    return {
        "production": production,
        "agent": agent,
        "admin": api_as(make_user(Role.ADMIN, username="root")),
        "runtime": runtime,
        "anonymous": APIClient(),
    }


def _post(world: dict[str, Any], who: str, url: str, body: str | dict[str, Any]) -> Any:
    text = body if isinstance(body, str) else json.dumps(body)
    return world[who].post(url, text, content_type="application/json")


# Every JSON endpoint the Django side parses, with who may call it: anonymous ones included.
JSON_ENDPOINTS = [
    ("anonymous", "/api/v1/auth/token/"),
    ("runtime", "/api/runtime/v1/heartbeat"),
    ("runtime", "/api/client/register"),
    ("runtime", "/api/client/metrics"),
    ("admin", "/api/v1/tenants/"),
    ("admin", "/api/v1/agents/"),
    ("admin", "/api/v1/environments/"),
    ("admin", "/api/v1/users/"),
    ("admin", "/api/v1/runtime-tokens/"),
    ("admin", "/api/v1/flags/"),
    ("admin", "/api/v1/flags/import/"),
    ("admin", "/api/v1/segments/"),
    ("admin", "/api/v1/kill-switches/"),
]


@pytest.mark.parametrize("depth", [100, 1_000, 100_000])
@pytest.mark.parametrize(("who", "url"), JSON_ENDPOINTS)
def test_json_body__nested_too_deep__400_nothing_stored(
    world: dict[str, Any], who: str, url: str, depth: int
) -> None:
    before = _rows()
    response = _post(world, who, url, _deep(depth))
    assert response.status_code == 400, response.content[:300]
    assert "Nested deeper than" in json.dumps(response.json()["errors"])
    assert _rows() == before


@pytest.mark.parametrize(("who", "url"), JSON_ENDPOINTS)
def test_json_body__over_size_limit__413_json_error_shape(
    world: dict[str, Any], who: str, url: str
) -> None:
    before = _rows()
    with override_settings(API_MAX_BODY_BYTES=10_000):
        response = _post(world, who, url, {"name": "x" * 20_000})
    assert response.status_code == 413
    assert set(response.json()) == {"detail", "errors"}
    assert _rows() == before


@pytest.mark.parametrize(("who", "url"), JSON_ENDPOINTS)
def test_json_body__over_djangos_form_limit_under_the_api_limit__parsed_not_413(
    world: dict[str, Any], who: str, url: str
) -> None:
    """The API's limit is API_MAX_BODY_BYTES (10 MiB), not Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB, for forms): DRF hands a JSONParser the whole
    ``request.body``, which Django caps at the smaller one, so a 3 MB JSON body was refused
    with a 413 naming the 10 MiB limit. Here scaled down: 20 kB between 1 kB and 100 kB."""
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1_000, API_MAX_BODY_BYTES=100_000):
        response = _post(world, who, url, {"name": "x" * 20_000})
    assert response.status_code != 413, response.content[:300]


@pytest.mark.parametrize(("who", "url"), JSON_ENDPOINTS)
def test_json_body__non_finite_or_huge_number__400(
    world: dict[str, Any], who: str, url: str
) -> None:
    before = _rows()
    for body in ('{"a": NaN}', '{"a": 1e999}', '{"a": ' + "9" * 5000 + "}"):
        assert _post(world, who, url, body).status_code == 400, body[:30]
    assert _rows() == before


def _nul_cases(world: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str]]:
    env = world["production"].pk
    agent = world["agent"].pk
    return [
        ("anonymous", "/api/v1/auth/token/", {"username": f"a{NUL}", "password": "x"}, "username"),
        ("runtime", "/api/runtime/v1/heartbeat", {"instance_id": "p1", "name": f"a{NUL}"}, "name"),
        (
            "runtime",
            "/api/runtime/v1/heartbeat",
            {"instance_id": "p1", "labels": {f"re{NUL}gion": "eu"}},
            'labels["re\\u0000gion"]',
        ),
        (
            "runtime",
            "/api/runtime/v1/heartbeat",
            {"instance_id": "p1", "circuit_breakers": {"search": {"state": f"o{NUL}"}}},
            "circuit_breakers.search.state",
        ),
        ("runtime", "/api/client/register", {"appName": f"app{NUL}"}, "appName"),
        (
            "runtime",
            "/api/client/metrics",
            {
                "appName": "app",
                "bucket": {
                    "start": "2026-01-01T00:00:00Z",
                    "stop": "2026-01-01T00:01:00Z",
                    "toggles": {f"flag{NUL}": {"yes": 1, "no": 0}},
                },
            },
            'bucket.toggles["flag\\u0000"]',
        ),
        ("admin", "/api/v1/tenants/", {"slug": "t2", "name": f"T{NUL}"}, "name"),
        ("admin", "/api/v1/agents/", {"tenant": 0, "slug": "a2", "name": f"A{NUL}"}, "name"),
        (
            "admin",
            "/api/v1/flags/",
            {
                "environment": env,
                "name": "f1",
                "strategies": [
                    {
                        "name": "default",
                        "constraints": [
                            {"contextName": "userId", "operator": "IN", "values": [f"u{NUL}"]}
                        ],
                    }
                ],
            },
            "strategies[0].constraints[0].values[0]",
        ),
        (
            "admin",
            "/api/v1/segments/",
            {
                "environment": env,
                "name": "s1",
                "constraints": [
                    {"contextName": "userId", "operator": "IN", "values": ["a", f"b{NUL}"]}
                ],
            },
            "constraints[0].values[1]",
        ),
        (
            "admin",
            "/api/v1/flags/import/",
            {
                "environment": env,
                "payload": {"version": 2, "features": [{"name": f"x{NUL}", "enabled": True}]},
            },
            "payload.features[0].name",
        ),
        (
            "admin",
            "/api/v1/kill-switches/",
            {"kind": "agent", "scope": "agent", "agent": agent, "reason": f"r{NUL}"},
            "reason",
        ),
    ]


NUL_CASE_COUNT = 12


@pytest.mark.parametrize("case", range(NUL_CASE_COUNT))
def test_json_body__nul_character__400_naming_the_field_nothing_stored(
    world: dict[str, Any], case: int
) -> None:
    cases = _nul_cases(world)
    assert len(cases) == NUL_CASE_COUNT
    who, url, body, field = cases[case]
    before = _rows()
    response = _post(world, who, url, body)
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()["errors"], response.json()
    assert _rows() == before


def _int_cases(world: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str]]:
    env = world["production"].pk
    agent = world["agent"]
    tenant = agent.tenant_id
    return [
        # PositiveBigIntegerField columns: 2**63 is one past them
        (
            "runtime",
            "/api/runtime/v1/heartbeat",
            {"instance_id": "p", "status": "ack", "revision": 2**63},
            "revision",
        ),
        (
            "runtime",
            "/api/client/metrics",
            {
                "appName": "a",
                "bucket": {
                    "start": "2026-01-01T00:00:00Z",
                    "stop": "2026-01-01T00:01:00Z",
                    "toggles": {"f": {"yes": 2**63, "no": 0}},
                },
            },
            "bucket",
        ),
        ("admin", "/api/v1/flags/", {"environment": 2**64, "name": "f2"}, "environment"),
        # PositiveIntegerField columns: 2**31 is one past them
        ("runtime", "/api/client/register", {"appName": "a", "interval": 2**31}, "interval"),
        (
            "admin",
            "/api/v1/segments/",
            {
                "environment": env,
                "segment_id": 2**31,
                "name": "s",
                "reason": "r",
                "constraints": [{"contextName": "userId", "operator": "IN", "values": ["a"]}],
            },
            "segment_id",
        ),
        (
            "admin",
            "/api/v1/environments/",
            {"tenant": tenant, "slug": "qa", "name": "QA", "position": 2**31},
            "position",
        ),
        (
            "admin",
            f"/api/v1/agents/{agent.pk}/bundles/versions/1/evaluations/",
            {"suite": "golden", "passed": 2**31, "failed": 0},
            "passed",
        ),
    ]


INT_CASE_COUNT = 7


@pytest.mark.parametrize("case", range(INT_CASE_COUNT))
def test_json_body__integer_beyond_its_column__400_naming_the_field_nothing_stored(
    world: dict[str, Any], case: int
) -> None:
    cases = _int_cases(world)
    assert len(cases) == INT_CASE_COUNT
    who, url, body, field = cases[case]
    before = _rows()
    response = _post(world, who, url, body)
    assert response.status_code == 400, response.content[:300]
    assert field in json.dumps(response.json()["errors"]), response.json()
    assert _rows() == before


@pytest.mark.parametrize(
    "url", ["/api/v1/flags/", "/api/v1/audit-events/", "/flags/", "/audit/", "/agents/", "/"]
)
@pytest.mark.parametrize("query", ["q=%00", "q=a%00b", "%00=1", "page=1&search=x%00"])
def test_query_string__nul__400(world: dict[str, Any], url: str, query: str) -> None:
    client = world["admin"]
    response = client.get(f"{url}?{query}")
    assert response.status_code == 400
    if url.startswith("/api/"):
        assert response.json()["errors"]


def test_path__nul__400(world: dict[str, Any]) -> None:
    assert world["admin"].get("/tenants/acme%00/").status_code == 400


def test_form__json_textarea_with_nul_or_deep_nesting__form_error_nothing_stored(
    world: dict[str, Any], admin
) -> None:  # type: ignore[no-untyped-def]
    from django.test import Client

    client = Client()
    client.force_login(admin)
    before = _rows()
    for strategies in (
        '[{"name": "default", "parameters": {"x": "\\u0000"}}]',
        _deep(5_000),
        '[{"name": "default", "parameters": {"x": NaN}}]',
    ):
        response = client.post(
            "/flags/new/",
            {
                "environment": world["production"].pk,
                "name": "hostile",
                "type": "release",
                "strategies": strategies,
                "variants": "[]",
                "reason": "test",
            },
        )
        assert response.status_code == 200  # the form again, with its errors
        assert b"errorlist" in response.content or b"invalid" in response.content
    assert _rows() == before


# ------------------------------------------------------------------------- the rule itself


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"a": "\\u0000"}', "a"),
        ('{"a\\u0000": 1}', '["a\\u0000"]'),
        ('[1, [2, "x\\u0000"]]', "[1][1]"),
        ('{"a": {"b c": ["ok", "\\u0000"]}}', 'a["b c"][1]'),
    ],
)
def test_json_loads__nul__error_by_path(text: str, path: str) -> None:
    with pytest.raises(JSONShapeError) as caught:
        json_loads(text)
    assert path in caught.value.errors


@pytest.mark.parametrize("depth", [65, 900, 5_000, 200_000])
def test_json_loads__too_deep__refused_without_recursion_error(depth: int) -> None:
    with pytest.raises(JSONShapeError):
        json_loads(_deep(depth))


def test_json_loads__within_limits__parsed() -> None:
    assert json_loads(_deep(64)) is not None
    assert json_loads('{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert json_problems({"a": float("inf")}) == {"a": ["Numbers must be finite."]}


def test_model_values__out_of_column_range_or_nul__named(tenant: Tenant) -> None:
    environment = Environment(
        tenant=tenant, slug="qa", name=f"Q{NUL}A", position=2**31, revision=INT64_MAX + 1
    )
    problems = model_values_problems(environment)
    assert set(problems) == {"name", "position", "revision"}
    assert model_values_problems(Environment(tenant=tenant, slug="q", name="Q", position=3)) == {}


# Digits Python's str.isdigit() takes but int() does not ("²"), or takes and no SDK reads
# (fullwidth, Arabic-Indic), and more digits than int() converts (4300): a number in words,
# never a 500.
NOT_ASCII_DIGITS = ["%C2%B2", "%EF%BC%95", "%D9%A1", "9" * 5000]


@pytest.mark.parametrize("value", NOT_ASCII_DIGITS)
@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/agents/{agent}/bundles/diff/?from={v}&to=1",
        "/api/v1/agents/{agent}/bundles/diff/?from=1&to={v}",
        "/api/v1/agents/?tenant={v}",
        "/api/v1/environments/?tenant={v}",
        "/runtimes/?agent={v}",
    ],
)
def test_query_string__digits_int_cannot_read__4xx(
    world: dict[str, Any], url: str, value: str
) -> None:
    from django.test import Client

    browser = Client()
    browser.force_login(make_user(Role.ADMIN, username="browser"))
    client = world["admin"] if url.startswith("/api/") else browser

    response = client.get(url.format(agent=world["agent"].pk, v=value))

    assert response.status_code in (400, 404), response.content[:300]


@pytest.mark.parametrize("value", ["\u00b2", "\uff15", "\u0661\u0660", "1" + "0" * 5000])
@pytest.mark.parametrize(
    "strategy",
    [
        lambda v: {
            "name": "flexibleRollout",
            "parameters": {"rollout": v, "stickiness": "default"},
        },
        lambda v: {"name": "gradualRolloutRandom", "parameters": {"percentage": v}},
        lambda v: {
            "name": "default",
            "constraints": [{"contextName": "n", "operator": "NUM_GT", "value": v}],
        },
        lambda v: {
            "name": "default",
            "constraints": [
                {
                    "contextName": "n",
                    "operator": "SEMVER_EQ",
                    "value": f"{v}.0.0" if len(v) < 9 else "x",
                }
            ],
        },
    ],
)
def test_flag_numbers__digits_no_sdk_reads__400_in_words_nothing_stored(
    world: dict[str, Any], value: str, strategy: Any
) -> None:
    before = _rows()

    response = _post(
        world,
        "admin",
        "/api/v1/flags/",
        {
            "environment": world["production"].pk,
            "name": "digits",
            "type": "release",
            "strategies": [strategy(value)],
            "reason": "test",
        },
    )

    assert response.status_code == 400, response.content[:300]
    assert _rows() == before


@pytest.mark.parametrize("value", ["²", "1" + "0" * 5000])
@pytest.mark.parametrize("field", ["strategy-0-segments", "variant-0-weight"])
def test_flag_editor__digits_int_cannot_read__form_error_nothing_stored(
    world: dict[str, Any], value: str, field: str
) -> None:
    from django.test import Client

    client = Client()
    client.force_login(make_user(Role.ADMIN, username="browser"))
    before = _rows()
    data = {
        "name": "digits",
        "type": "release",
        "editor": "form",
        "strategy-TOTAL_FORMS": "1",
        "strategy-INITIAL_FORMS": "0",
        "strategy-0-name": "default",
        "strategy-0-constraint-TOTAL_FORMS": "0",
        "strategy-0-constraint-INITIAL_FORMS": "0",
        "strategy-0-variant-TOTAL_FORMS": "0",
        "strategy-0-variant-INITIAL_FORMS": "0",
        "variant-TOTAL_FORMS": "1",
        "variant-INITIAL_FORMS": "0",
        "variant-0-name": "a",
        "variant-0-weight_type": "fix",
        "variant-0-weight": "500",
        "reason": "test",
    }
    data[field] = value

    response = client.post(f"/flags/new/?environment={world['production'].pk}", data)

    assert response.status_code == 200
    assert _rows() == before
