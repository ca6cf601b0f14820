"""The hostile-input corpus (issue 9, the nets) on every text field an API or a form
reaches: markup, NUL, bidi overrides, zero-width characters, deep nesting, huge numbers and
oversized values.
Each is refused with a 4xx, or stored and rendered escaped on the page that shows it; never a
500. (The Chromium check that a stored script stays inert is tests/e2e/test_hostile_input.py.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django import forms as django_forms
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.roles import Role
from apps.tenancy.models import Tenant
from tests.conftest import api_as
from tests.factories import make_user

# The world of the authorisation matrix: one object of every kind each route needs.
from tests.project.test_authorization_matrix import ROUTES
from tests.project.test_authorization_matrix import world as matrix_world  # noqa: F401

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
CORPUS = [
    SCRIPT,
    '"><img src=x onerror=alert(1)>',
    "</textarea><svg onload=alert(1)>",
    "{{ 7*7 }} {% now 'Y' %}",  # template syntax is text, never evaluated
    "evil\u202egnp.exe",  # right-to-left override
    "zero\u200bwidth\u200d\ufeff",
    "x\x00y",
    "x" * 100_000,
    "emoji \U0001f600 and combining e\u0301",
]
EXPECTED_4XX_OR_2XX = range(200, 500)


def _page_escapes(page: str, value: str) -> bool:
    """The page shows no live markup from ``value``."""
    return SCRIPT not in page and "<img src=x" not in page and "<svg onload" not in page


# (create URL, body with the hostile value in one field, the UI page that shows it)
FIELDS: dict[str, tuple[str, Callable[[dict[str, Any], str], dict[str, Any]], str]] = {
    "tenant.name": ("/api/v1/tenants/", lambda w, v: {"slug": "t-x", "name": v}, "/tenants/"),
    "tenant.description": (
        "/api/v1/tenants/",
        lambda w, v: {"slug": "t-y", "name": "T", "description": v},
        "/tenants/t-y/",
    ),
    "agent.name": (
        "/api/v1/agents/",
        lambda w, v: {"tenant": w["tenant"].pk, "slug": "a-x", "name": v},
        "/agents/",
    ),
    "agent.description": (
        "/api/v1/agents/",
        lambda w, v: {"tenant": w["tenant"].pk, "slug": "a-y", "name": "A", "description": v},
        "/agents/",
    ),
    "environment.name": (
        "/api/v1/environments/",
        lambda w, v: {"tenant": w["tenant"].pk, "slug": "qa", "name": v},
        "/tenants/acme/",
    ),
    "flag.description": (
        "/api/v1/flags/",
        lambda w, v: {"environment": w["dev"].pk, "name": "f-x", "description": v},
        "/flags/",
    ),
    "segment.name": (
        "/api/v1/segments/",
        lambda w, v: {
            "environment": w["dev"].pk,
            "name": v,
            "constraints": [{"contextName": "userId", "operator": "IN", "values": [v]}],
        },
        "/flags/",
    ),
    "kill_switch.reason": (
        "/api/v1/kill-switches/",
        lambda w, v: {
            "kind": "agent_stopped",
            "scope": "tenant",
            "tenant": w["tenant"].pk,
            "reason": v,
        },
        "/flags/kill-switches/",
    ),
    "runtime_token.name": (
        "/api/v1/runtime-tokens/",
        lambda w, v: {"environment": w["dev"].pk, "name": v},
        "/runtimes/",
    ),
    "user.username": ("/api/v1/users/", lambda w, v: {"username": v, "role": "Viewer"}, "/users/"),
    "budget.name": (
        "/api/v1/budgets/",
        lambda w, v: {
            "tenant": w["tenant"].pk,
            "name": v,
            "scope": "tenant",
            "window": "day",
            "limits": {"cost_usd": "5"},
        },
        "/budgets/",
    ),
    "budget.description": (
        "/api/v1/budgets/",
        lambda w, v: {
            "tenant": w["tenant"].pk,
            "name": f"b-{len(v)}-{sum(map(ord, v))}",  # one budget per value (names unique)
            "scope": "tenant",
            "window": "day",
            "limits": {"cost_usd": "5"},
            "description": v,
        },
        "/budgets/",
    ),
    "budget.degrade_model": (
        "/api/v1/budgets/",
        lambda w, v: {
            "tenant": w["tenant"].pk,
            "name": f"m-{len(v)}-{sum(map(ord, v))}",
            "scope": "tenant",
            "window": "day",
            "limits": {"tokens": 1000},
            "action": "degrade",
            "degrade_mode": "model",
            "degrade_model": v,
        },
        "/budgets/",
    ),
    "audit.reason": (
        "/api/v1/tenants/",
        lambda w, v: {"slug": "t-z", "name": "T", "reason": v},
        "/audit/",
    ),
}


@pytest.fixture
def world(tenant: Tenant) -> dict[str, Any]:
    admin = make_user(Role.ADMIN, tenant, username="corpus-admin")
    browser = Client()
    browser.force_login(admin)
    return {
        "tenant": tenant,
        "dev": tenant.environments.get(slug="development"),
        "api": api_as(admin),
        "browser": browser,
    }


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_text_field__hostile_corpus__refused_or_stored_and_rendered_escaped(
    world: dict[str, Any], field: str
) -> None:
    url, body, page_url = FIELDS[field]
    client: APIClient = world["api"]
    for value in CORPUS:
        response = client.post(url, body(world, value), format="json")
        assert response.status_code in EXPECTED_4XX_OR_2XX, (
            field,
            value[:40],
            response.status_code,
        )
        if response.status_code >= 400:
            assert response.json()["errors"], (field, value[:40])
            continue
        page = world["browser"].get(page_url)
        assert page.status_code == 200
        assert _page_escapes(page.content.decode(), value), (field, value[:40])


@pytest.mark.parametrize(
    "body",
    [
        "[" * 10_000 + "]" * 10_000,
        json.dumps({"name": 10**400}),
        '{"name": 1e400}',
        json.dumps({"name": {"a": [[[[{"b": "x" * 1000}]]]]}}),
    ],
)
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_text_field__structural_garbage__4xx(world: dict[str, Any], field: str, body: str) -> None:
    url = FIELDS[field][0]
    response = world["api"].post(url, body, content_type="application/json")
    assert 400 <= response.status_code < 500, (field, body[:40], response.status_code)


def test_runtime_text_fields__hostile_corpus__refused_or_stored(tenant: Tenant) -> None:
    from apps.accounts.runtime_tokens import runtime_token_create
    from apps.audit.services import SystemActor

    production = tenant.environments.get(slug="production")
    _, token = runtime_token_create(
        actor=SystemActor("t"), tenant=tenant, environment=production, name="fleet"
    )
    runtime = APIClient()
    runtime.credentials(HTTP_AUTHORIZATION=token)
    admin = Client()
    admin.force_login(make_user(Role.ADMIN, tenant, username="corpus-admin"))
    for value in CORPUS:
        beat = runtime.post(
            "/api/runtime/v1/heartbeat",
            {"instance_id": "pod-1", "name": value, "labels": {"k": value[:200]}},
            format="json",
        )
        register = runtime.post("/api/client/register", {"appName": value}, format="json")
        for response in (beat, register):
            assert response.status_code in EXPECTED_4XX_OR_2XX, (value[:40], response.status_code)
        page = admin.get("/runtimes/")
        assert page.status_code == 200
        assert _page_escapes(page.content.decode(), value)


# ------------------------------------------------------------------------------- UI forms

UI_FORMS = sorted(
    name for name, route in ROUTES.items() if ":" in name and {"GET", "POST"} <= set(route.methods)
)
UI_CORPUS = [SCRIPT, '"><img src=x onerror=alert(1)>', "x\x00y", "evil\u202egnp", "x" * 50_000]


def _valid_data(form: django_forms.Form) -> dict[str, Any]:
    """Something for every field, so that the hostile value is what the form judges."""
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        if isinstance(field, django_forms.BooleanField):
            continue
        if isinstance(field, django_forms.ChoiceField):
            choices = [str(v) for v, _ in field.choices if str(v)]
            if choices:
                data[name] = (
                    choices[0]
                    if not isinstance(field, django_forms.MultipleChoiceField)
                    else [choices[0]]
                )
        elif isinstance(field, django_forms.IntegerField):
            data[name] = "1"
        elif isinstance(field, django_forms.CharField):
            data[name] = (
                "[]"
                if "strateg" in name or "variant" in name or "constraint" in name
                else "ok-value"
            )
    return data


@pytest.mark.parametrize("name", UI_FORMS)
def test_ui_form__hostile_corpus_in_every_text_field__refused_or_rendered_escaped(
    request: pytest.FixtureRequest, name: str
) -> None:
    objects: dict[str, Any] = request.getfixturevalue("matrix_world")
    route = ROUTES[name]
    url = reverse(name, kwargs=objects["args"][route.args] if route.args else None)
    browser = Client()
    browser.force_login(objects["users"]["admin"])
    page = browser.get(url)
    assert page.status_code == 200
    form = page.context.get("form")
    if form is None:
        pytest.skip(f"{name} renders no form named 'form'")
    text_fields = [
        n
        for n, f in form.fields.items()
        if isinstance(f, django_forms.CharField) and not isinstance(f, django_forms.ChoiceField)
    ]
    for field in text_fields:
        for value in UI_CORPUS:
            data = {**_valid_data(form), field: value}
            response = browser.post(url, data)
            assert response.status_code < 500, (name, field, value[:30])
            shown = browser.get(response["Location"] if response.status_code == 302 else url)
            assert shown.status_code < 500
            assert _page_escapes(shown.content.decode(), value), (name, field, value[:30])
