"""Hostile input on every surface of budgets: the operator API, the pages, the command and the
runtime reserve and settle routes. Every bad value is a 4xx (a form error, a one-line
``CommandError``) with the field named, changes nothing, and is never a 500; every mutation
by someone not allowed is refused and leaves no audit event."""

from __future__ import annotations

import itertools
import json
from io import StringIO
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.budgets.models import Budget, Reservation
from apps.core.roles import Role
from apps.tenancy.models import Agent, Tenant

from ..conftest import api_as
from ..factories import AgentFactory, make_user
from .conftest import make_budget, make_daily

pytestmark = pytest.mark.django_db
URL = "/api/v1/budgets/"

# Not a limit: each refused with an error on the metric, whichever metric it is sent for.
BAD_NUMBERS = [
    "\u0663",  # Arabic-Indic digit: Python's Decimal and int read it as 3
    "\uff11\uff12",  # full-width digits
    "\u00b2",
    "1_000",  # Python's digit grouping
    "1,000",
    "0x10",
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "1e9999999",  # an exponent that would make a 10-million-digit integer
    "1e-9999999",
    "5\x00",
    "five",
    " ",
    [5],
    {"value": 5},
    True,
    False,
]
# Refused as a limit: not above 0, or more than 8 decimal places.
BAD_LIMITS = [*BAD_NUMBERS, "0", "-0", "-0.0", 0, -1, "1e-9", "5.123456789", "1e30", 10**30]


def _body(of: Tenant, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant": of.pk,
        "name": "hostile",
        "scope": "tenant",
        "window": "hour",
        "limits": {"cost_usd": "5.00"},
    }
    body.update(overrides)
    return body


# ------------------------------------------------------------------------- limits (API)


def test_api_create__bad_limits__400_keyed_by_metric_nothing_created(
    operator: User, tenant: Tenant
) -> None:
    # every bad value of the kind in one test: a database set-up per value costs CI seconds
    wrong = []
    api = api_as(operator)
    for metric, value in itertools.product(
        ("cost_usd", "tokens", "requests", "tool_calls"), BAD_LIMITS
    ):
        response = api.post(URL, _body(tenant, limits={metric: value}), format="json")
        errors = response.json().get("errors", {})
        if (
            response.status_code != 400
            or f"limits.{metric}" not in errors
            or "InvalidOperation" in json.dumps(errors)
        ):
            wrong.append((value, response.status_code, errors))
    assert wrong == []
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    "raw, metric",
    [
        ('{"cost_usd": 1e400}', "cost_usd"),
        ('{"tokens": 1e400}', "tokens"),
        ('{"tokens": 1e999999999}', "tokens"),
        ('{"requests": -0.0}', "requests"),
        # more than 8 decimal places, though a float reads it as 1.0
        ('{"cost_usd": 1.0000000000000000001}', "cost_usd"),
        ('{"cost_usd": 0.123456789}', "cost_usd"),
        ('{"tool_calls": 2.5}', "tool_calls"),
        ('{"tokens": ' + "9" * 40 + "}", "tokens"),
    ],
)
def test_api_create__bad_limit_as_json_number__400(
    operator: User, tenant: Tenant, raw: str, metric: str
) -> None:
    body = json.dumps(_body(tenant, limits={})).replace('"limits": {}', f'"limits": {raw}')
    response = api_as(operator).post(URL, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert f"limits.{metric}" in response.json()["errors"]
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    "limits, stored",
    [
        ({"cost_usd": "5"}, "5.00"),
        ({"cost_usd": 5.1}, "5.10"),
        ({"cost_usd": " 7.25 "}, "7.25"),
        ({"cost_usd": "1e2"}, "100.00"),
        ({"cost_usd": "0.00000001"}, "0.00000001"),
        ({"tokens": "1200"}, 1200),
        ({"tokens": 1200.0}, 1200),
    ],
)
def test_api_create__plain_numbers__accepted(
    operator: User, tenant: Tenant, limits: dict[str, Any], stored: Any
) -> None:
    response = api_as(operator).post(URL, _body(tenant, limits=limits), format="json")
    assert response.status_code == 201, response.content
    (metric,) = limits
    assert response.json()["limits"][metric] == stored


@pytest.mark.parametrize(
    "limits",
    [[], "5", 5, {"cost": "5"}, {}, {"cost_usd": None}, {"cost_usd": "5", "dollars": 1}],
    ids=repr,
)
def test_api_create__limits_not_an_object_of_metrics__400(
    operator: User, tenant: Tenant, limits: Any
) -> None:
    response = api_as(operator).post(URL, _body(tenant, limits=limits), format="json")
    assert response.status_code == 400, response.content
    assert any(key.startswith("limits") for key in response.json()["errors"])
    assert not Budget.objects.exists()


# ---------------------------------------------------------------- other fields (API)


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", ""),
        ("name", "   "),
        ("name", "x" * 121),
        ("name", "evil\u202eexe"),  # a bidirectional override
        ("name", "bell\x07"),
        ("name", "two\nlines"),
        ("name", "zero\u200bwidth"),
        ("name", "nul\x00"),
        ("name", ["hostile"]),
        ("name", {"a": 1}),
        ("name", None),
        ("scope", "TENANT"),
        ("scope", ["tenant"]),
        ("scope", None),
        ("window", "year"),
        ("window", " hour"),
        ("window", 1),
        ("action", "BLOCK"),
        ("action", ["block"]),
        ("strict", "maybe"),
        ("strict", [True]),
        ("description", "x" * 2001),
        ("description", "nul\x00"),
        ("degrade_mode", "cheap"),
        ("tenant", "abc"),
        ("tenant", 2**70),
        ("tenant", -1),
        ("tenant", None),
        ("agent", ["support-bot"]),
        ("agent", {"slug": "support-bot"}),
        ("agent", "x" * 101),
        ("environment", "nowhere"),
        ("environment", ["production"]),
        ("reason", "nul\x00"),
    ],
    ids=repr,
)
def test_api_create__bad_field__400_keyed_by_field(
    operator: User, tenant: Tenant, agent: Agent, field: str, value: Any
) -> None:
    response = api_as(operator).post(URL, _body(tenant, **{field: value}), format="json")
    assert response.status_code == 400, (field, value, response.content)
    body = response.json()
    assert body["errors"], body
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    "thresholds",
    [
        [0],
        [101],
        [-50],
        [50.5],
        ["fifty"],
        [True],
        [None],
        [[50]],
        {"50": 1},
        list(range(1, 12)),
        "50,abc",
        "\u0665\u0660",
        [10**30],
        None,
    ],
    ids=repr,
)
def test_api_create__bad_thresholds__400(operator: User, tenant: Tenant, thresholds: Any) -> None:
    response = api_as(operator).post(URL, _body(tenant, thresholds=thresholds), format="json")
    assert response.status_code == 400, response.content
    assert "thresholds" in response.json()["errors"]
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    "thresholds, stored",
    [
        ([100, 50, 80], [50, 80, 100]),  # unsorted: sorted
        ([80, 80, 100], [80, 100]),  # repeated: once
        (["50", 90.0], [50, 90]),
    ],
)
def test_api_create__thresholds_unsorted_or_repeated__normalised(
    operator: User, tenant: Tenant, thresholds: Any, stored: list[int]
) -> None:
    response = api_as(operator).post(URL, _body(tenant, thresholds=thresholds), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["thresholds"] == stored


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"action": "degrade"}, "degrade_mode"),
        ({"action": "degrade", "degrade_mode": "model"}, "degrade_model"),
        ({"action": "degrade", "degrade_mode": "model", "degrade_model": "  "}, "degrade_model"),
        (
            {"action": "degrade", "degrade_mode": "model", "degrade_model": "m" * 121},
            "degrade_model",
        ),
        (
            {"action": "degrade", "degrade_mode": "model", "degrade_model": "gpt\x1b[31m"},
            "degrade_model",
        ),
    ],
)
def test_api_create__degrade_settings_incomplete__400(
    operator: User, tenant: Tenant, fields: dict[str, Any], key: str
) -> None:
    response = api_as(operator).post(URL, _body(tenant, **fields), format="json")
    assert response.status_code == 400, response.content
    assert key in response.json()["errors"]
    assert not Budget.objects.exists()


def test_api_create__degrade_settings_without_degrade__dropped(
    operator: User, tenant: Tenant
) -> None:
    response = api_as(operator).post(
        URL,
        _body(tenant, action="block", degrade_mode="model", degrade_model="gpt-4o-mini"),
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["degrade_mode"] == "" and response.json()["degrade_model"] == ""


# ------------------------------------------------------------------ names and scopes


@pytest.mark.parametrize(
    "name", ["Tenant Hourly", "tenant hourly ", "  tenant   hourly", "TENANT\thourly"]
)
def test_api_create__name_differing_by_case_or_whitespace__400(
    operator: User, tenant: Tenant, name: str
) -> None:
    make_budget(tenant)  # "tenant hourly"
    response = api_as(operator).post(URL, _body(tenant, name=name), format="json")
    assert response.status_code == 400, response.content
    assert "name" in response.json()["errors"]
    assert Budget.objects.count() == 1


def test_api_update__name_of_another_budget_by_case__400(operator: User, tenant: Tenant) -> None:
    make_budget(tenant)
    other = make_budget(tenant, name="daily", window="day")
    response = api_as(operator).patch(f"{URL}{other.pk}/", {"name": "TENANT HOURLY"}, format="json")
    assert response.status_code == 400, response.content
    assert "name" in response.json()["errors"]
    other.refresh_from_db()
    assert other.name == "daily" and other.version == 1


def _archived_agent(tenant: Tenant) -> Agent:
    return AgentFactory(tenant=tenant, slug="retired", archived_at=timezone.now())  # type: ignore[return-value]


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"scope": "agent", "agent": "secret-agent"}, "agent"),  # another tenant's agent
        ({"scope": "agent", "agent": "retired"}, "agent"),  # archived
        ({"scope": "agent", "agent": "Support-Bot"}, "agent"),
        ({"scope": "agent"}, "agent"),
        ({"scope": "end_user", "agent": ""}, "agent"),
        ({"scope": "tenant", "agent": "support-bot"}, "agent"),
        ({"environment": "staging-of-globex"}, "environment"),
        ({"environment": "archived-env"}, "environment"),
    ],
)
def test_api_create__agent_or_environment_not_usable__400(
    operator: User,
    tenant: Tenant,
    other_tenant: Tenant,
    agent: Agent,
    fields: dict[str, Any],
    key: str,
) -> None:
    _archived_agent(tenant)
    from ..factories import EnvironmentFactory

    EnvironmentFactory(tenant=other_tenant, slug="staging-of-globex", name="S")
    EnvironmentFactory(tenant=tenant, slug="archived-env", name="A", archived_at=timezone.now())
    response = api_as(operator).post(URL, _body(tenant, **fields), format="json")
    assert response.status_code == 400, response.content
    assert key in response.json()["errors"]
    assert not Budget.objects.exists()


def test_api_create__another_tenants_id__refused_nothing_created(
    operator: User, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = api_as(operator).post(URL, _body(other_tenant), format="json")
    assert response.status_code in (403, 404), response.content
    assert not Budget.objects.exists()


# --------------------------------------------------------------- changes and who may


@pytest.mark.parametrize(
    "body",
    [
        {"limits": {"cost_usd": "\u0663"}},
        {"limits": {"tokens": "1e9999999"}},
        {"limits": ["cost_usd"]},
        {"limits": {"cost_usd": None}},  # the only limit removed
        {"thresholds": [0]},
        {"name": ""},
        {"agent": "secret-agent"},
        {"environment": "nowhere"},
        {"expected_version": "one"},
        {"expected_version": 2**40},
        {"expected_version": -1},
    ],
    ids=repr,
)
def test_api_patch__bad_input__400_nothing_changed(
    operator: User, tenant: Tenant, other_tenant: Tenant, body: dict[str, Any]
) -> None:
    budget = make_budget(tenant)
    response = api_as(operator).patch(f"{URL}{budget.pk}/", body, format="json")
    assert response.status_code == 400, response.content
    budget.refresh_from_db()
    assert budget.version == 1 and str(budget.limit_cost_usd) == "5.00000000"
    assert not AuditEvent.objects.filter(action="budget.changed").exists()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
@pytest.mark.parametrize(
    "how", [{"expected_version": 7}, {"HTTP_IF_MATCH": '"7"'}], ids=["body", "if-match"]
)
def test_api_change__stale_version__409_nothing_changed(
    operator: User, tenant: Tenant, method: str, how: dict[str, Any]
) -> None:
    budget = make_budget(tenant)
    body = {} if method == "delete" else _body(tenant, name="renamed")
    body.update({k: v for k, v in how.items() if not k.startswith("HTTP_")})
    headers = {k: v for k, v in how.items() if k.startswith("HTTP_")}
    response = getattr(api_as(operator), method)(
        f"{URL}{budget.pk}/", body, format="json", **headers
    )
    assert response.status_code == 409, response.content
    budget.refresh_from_db()
    assert budget.name == "tenant hourly" and budget.version == 1


@pytest.mark.parametrize("header", ['"abc"', 'W/"1"', "garbage", '"1", "2"', '"99999999999"'])
def test_api_change__if_match_garbage__4xx_nothing_changed(
    operator: User, tenant: Tenant, header: str
) -> None:
    budget = make_budget(tenant)
    response = api_as(operator).patch(
        f"{URL}{budget.pk}/", {"name": "renamed"}, format="json", HTTP_IF_MATCH=header
    )
    assert response.status_code in (400, 409, 412), response.content
    budget.refresh_from_db()
    assert budget.name == "tenant hourly"


@pytest.fixture
def outsiders(tenant: Tenant, other_tenant: Tenant) -> dict[str, User]:
    return {
        "viewer": make_user(Role.VIEWER, tenant, username="v-hostile"),
        "approver": make_user(Role.APPROVER, tenant, username="a-hostile"),
        "other-operator": make_user(Role.OPERATOR, other_tenant, username="o-hostile"),
    }


@pytest.mark.parametrize("who", ["viewer", "approver", "other-operator"])
def test_api_mutations__not_allowed__refused_nothing_changed_nothing_audited(
    outsiders: dict[str, User], tenant: Tenant, who: str
) -> None:
    budget = make_budget(tenant)
    client = api_as(outsiders[who])
    events = AuditEvent.objects.count()
    expected = (404,) if who == "other-operator" else (403,)
    assert client.post(URL, _body(tenant, name="mine"), format="json").status_code in (403, 404)
    assert client.put(f"{URL}{budget.pk}/", _body(tenant), format="json").status_code in expected
    assert client.patch(f"{URL}{budget.pk}/", {"name": "x"}, format="json").status_code in expected
    assert client.delete(f"{URL}{budget.pk}/").status_code in expected
    budget.refresh_from_db()
    assert budget.name == "tenant hourly" and budget.version == 1
    assert Budget.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_api_other_tenant_operator__cannot_read_or_status(
    outsiders: dict[str, User], tenant: Tenant
) -> None:
    budget = make_budget(tenant)
    client = api_as(outsiders["other-operator"])
    assert client.get(f"{URL}{budget.pk}/").status_code == 404
    assert client.get(f"{URL}{budget.pk}/status/").status_code == 404
    assert client.get(URL).json()["results"] == []


@pytest.mark.parametrize(
    "query",
    [
        "tenant=abc",
        "tenant=-1",
        "tenant=99999999999999999999999",
        "tenant=\u00b2",
        "scope=planet",
        "scope=TENANT",
        "agent=x",
        "agent=\u00b2",
        "agent=1e3",
        "agent=%00",
        "page=abc",
    ],
)
def test_api_list__garbage_filters__4xx_never_500(
    operator: User, tenant: Tenant, query: str
) -> None:
    make_budget(tenant)
    response = api_as(operator).get(f"{URL}?{query}")
    assert 400 <= response.status_code < 500, (query, response.status_code)


@pytest.mark.parametrize("pk", ["abc", "\u00b2", "\u0663", "99999999999999999999999", "-1", "1.0"])
def test_api_detail__garbage_ids__404(operator: User, tenant: Tenant, pk: str) -> None:
    make_budget(tenant)
    for suffix in ("", "status/"):
        assert api_as(operator).get(f"{URL}{pk}/{suffix}").status_code == 404


# ------------------------------------------------------------------------------ pages


def _browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "hostile form",
        "scope": "tenant",
        "agent": "",
        "environment": "",
        "window": "hour",
        "limit_cost_usd": "5.00",
        "limit_tokens": "",
        "limit_requests": "",
        "limit_tool_calls": "",
        "action": "alert",
        "degrade_mode": "",
        "degrade_model": "",
        "thresholds": "50, 80, 100",
        "description": "",
        "reason": "",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    "field, value",
    [
        ("limit_cost_usd", "\u0663"),
        ("limit_cost_usd", "1_000"),
        ("limit_cost_usd", "NaN"),
        ("limit_cost_usd", "5.123456789"),
        ("limit_cost_usd", "-0"),
        ("limit_tokens", "1e9999999"),
        ("limit_tokens", "1.5"),
        ("limit_requests", "\u00b2"),
        ("limit_tool_calls", "\uff11\uff12"),
        ("thresholds", "0, 50"),
        ("thresholds", "50, \u0668\u0660"),
        ("thresholds", "1e9999999"),
        ("name", "evil\u202eexe"),
        ("name", "nul\x00"),
        ("agent", "secret-agent"),
        ("environment", "nowhere"),
        ("scope", "planet"),
    ],
)
def test_form__bad_value__form_error_nothing_created(
    operator: User, tenant: Tenant, other_tenant: Tenant, field: str, value: str
) -> None:
    response = _browser(operator).post("/budgets/new/", _form(**{field: value}))
    assert response.status_code == 200, response.status_code
    form = response.context["form"]
    assert form.errors, form.errors
    assert not Budget.objects.exists()


def test_form_edit__stale_version__form_error_nothing_changed(
    operator: User, tenant: Tenant
) -> None:
    budget = make_budget(tenant)
    response = _browser(operator).post(
        f"/budgets/{budget.pk}/edit/",
        _form(name="renamed", expected_version="7"),
    )
    assert response.status_code == 200
    assert response.context["form"].errors
    budget.refresh_from_db()
    assert budget.name == "tenant hourly"


@pytest.mark.parametrize("expected_version", ["abc", "\u0663", "-1", "1e3", "99999999999999999999"])
def test_form_edit__garbage_version__form_error_nothing_changed(
    operator: User, tenant: Tenant, expected_version: str
) -> None:
    budget = make_budget(tenant)
    response = _browser(operator).post(
        f"/budgets/{budget.pk}/edit/", _form(name="renamed", expected_version=expected_version)
    )
    assert response.status_code == 200
    budget.refresh_from_db()
    assert budget.name == "tenant hourly"


@pytest.mark.parametrize(
    "query",
    [
        "budget=\u00b2",
        "budget=\u0663",
        "budget=abc",
        "budget=99999999999999999999999",
        "scope=agent&agent=secret-agent&window=hour",
        "scope=%00&window=%00",
        "scope=tenant&window=hour&environment=" + "x" * 5000,
    ],
)
def test_preview__garbage_query__no_server_error(
    operator: User, tenant: Tenant, other_tenant: Tenant, query: str
) -> None:
    make_budget(tenant)
    response = _browser(operator).get(f"/budgets/preview/?{query}")
    assert response.status_code in (200, 400, 404), (query, response.status_code)


def test_preview__another_tenants_budget__404(outsiders: dict[str, User], tenant: Tenant) -> None:
    budget = make_budget(tenant)
    response = _browser(outsiders["other-operator"]).get(f"/budgets/preview/?budget={budget.pk}")
    assert response.status_code == 404


@pytest.mark.parametrize("who", ["viewer", "approver", "other-operator"])
def test_pages_mutations__not_allowed__refused_nothing_changed(
    outsiders: dict[str, User], tenant: Tenant, who: str
) -> None:
    budget = make_budget(tenant)
    events = AuditEvent.objects.count()
    browser = _browser(outsiders[who])
    created = browser.post("/budgets/new/", _form(name="mine"))
    if who == "other-operator":  # in the operator's own tenant, never in acme
        assert Budget.objects.get(name="mine").tenant != tenant
        events = AuditEvent.objects.count()
    else:
        assert created.status_code == 403
    edit = browser.post(f"/budgets/{budget.pk}/edit/", _form(name="x", expected_version="1"))
    assert edit.status_code in (403, 404)
    delete = browser.post(f"/budgets/{budget.pk}/delete/", {"reason": "x", "expected_version": 1})
    assert delete.status_code in (403, 404)
    assert Budget.objects.get(tenant=tenant).name == "tenant hourly"
    assert AuditEvent.objects.count() == events


# ----------------------------------------------------------------------------- command


def budget_command(*args: str) -> str:
    out = StringIO()
    call_command("budget", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.parametrize(
    "args",
    [
        ["--limit-cost", "\u0663"],
        ["--limit-cost", "1_000"],
        ["--limit-cost", "Infinity"],
        ["--limit-tokens", "1e9999999"],
        ["--limit-requests", "1.5"],
        ["--limit-tool-calls", "-3"],
        ["--thresholds", "50,abc"],
        ["--thresholds", "0"],
        ["--name", "evil\u202eexe"],
        ["--name", "DAILY"],
        ["--name", "  daily  "],
        ["--name", "   "],
        ["--agent", "secret-agent"],
        ["--environment", "nowhere"],
        ["--scope", "agent"],  # no agent
        ["--action", "degrade"],  # no mode
        ["--degrade-model", "m" * 121, "--action", "degrade", "--degrade-mode", "model"],
        ["--expected-version", "7"],
    ],
)
def test_command_update__bad_option__one_line_command_error_nothing_changed(
    tenant: Tenant, other_tenant: Tenant, args: list[str]
) -> None:
    budget = make_budget(tenant)
    make_budget(tenant, name="daily", window="day")
    with pytest.raises(CommandError) as caught:
        budget_command("update", str(budget.pk), *args)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message and "InvalidOperation" not in message
    budget.refresh_from_db()
    assert budget.version == 1 and budget.name == "tenant hourly"


@pytest.mark.parametrize("which", ["\u00b2", "\u0663", "99999999999999999999999", "-1", "nope", ""])
@pytest.mark.parametrize("action", ["show", "update", "delete"])
def test_command__garbage_budget_reference__command_error(
    tenant: Tenant, which: str, action: str
) -> None:
    make_budget(tenant)
    extra = ["--reason", "x"] if action == "delete" else []
    with pytest.raises(CommandError):
        budget_command(action, which, *extra)
    assert Budget.objects.count() == 1


@pytest.mark.parametrize("option", ["--expected-version", "--tenant"])
def test_command__garbage_option_values__command_error(tenant: Tenant, option: str) -> None:
    budget = make_budget(tenant)
    with pytest.raises(CommandError):
        budget_command("update", str(budget.pk), option, "\u00b2", "--name", "x")
    budget.refresh_from_db()
    assert budget.name == "tenant hourly"


# ----------------------------------------------------------------------- runtime routes

RESERVE = "/api/runtime/v1/budgets/reserve"
SETTLE = "/api/runtime/v1/budgets/settle"


@pytest.fixture
def runtime(asgi_server: str, token_and_raw: Any) -> Any:
    raw = token_and_raw[1]

    def post(path: str, data: Any) -> requests.Response:
        headers = {"Authorization": raw, "Content-Type": "application/json"}
        payload = data if isinstance(data, str | bytes) else json.dumps(data)
        return requests.post(asgi_server + path, data=payload, headers=headers, timeout=30)

    return post


def _reserve(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "reservation_id": "req-1:step-1",
        "request_id": "req-1",
        "agent": "support-bot",
        "estimate": {"cost_usd": "0.40"},
    }
    data.update(fields)
    return data


# Each kind of bad input to the runtime routes is one test that sends every input of the kind
# to one server (a server per input costs CI a minute for nothing the kind does not show).


def _refused_all(
    runtime: Any, path: str, cases: list[tuple[Any, str]]
) -> list[tuple[Any, int, str]]:
    """POST each ``(body, field)``; the ones not answered 400 with ``field`` among the errors
    (``""``: any 400), as (body, status, text)."""
    wrong = []
    for body, field in cases:
        response = runtime(path, body)
        ok = response.status_code == 400 and "InvalidOperation" not in response.text
        if ok and field:
            ok = field in response.json()["errors"]
        if not ok:
            wrong.append((body, response.status_code, response.text[:200]))
    return wrong


def test_reserve__bad_estimates__400_keyed_by_metric_nothing_held(
    tenant: Tenant, agent: Agent, runtime: Any
) -> None:
    make_daily(tenant, strict=True, action="block", limits={"cost_usd": "100", "tokens": 10**6})
    values = [*BAD_NUMBERS, -1, "-0.5", "1e30", "5.123456789"]
    cases = [
        (_reserve(estimate={metric: value}), f"estimate.{metric}")
        for metric in ("cost_usd", "tokens", "tool_calls")
        for value in values
    ]
    assert _refused_all(runtime, RESERVE, cases) == []
    assert not Reservation.objects.exists()


def test_reserve__bad_estimate_json_numbers__400(
    tenant: Tenant, agent: Agent, runtime: Any
) -> None:
    make_daily(tenant, strict=True, action="block", limits={"cost_usd": "100"})
    raws = [
        ('{"tokens": 1e999999999}', "estimate.tokens"),
        ('{"cost_usd": 1e400}', "estimate.cost_usd"),
        ('{"tokens": ' + "9" * 40 + "}", "estimate.tokens"),
        ('{"tokens": 1.5}', "estimate.tokens"),
        ('{"cost_usd": 0.123456789}', "estimate.cost_usd"),
    ]
    template = json.dumps(_reserve(estimate={}))
    cases = [(template.replace('"estimate": {}', f'"estimate": {raw}'), key) for raw, key in raws]
    assert _refused_all(runtime, RESERVE, cases) == []
    assert not Reservation.objects.exists()


def test_reserve__bad_fields__400_keyed_nothing_held(
    tenant: Tenant, agent: Agent, runtime: Any
) -> None:
    make_daily(tenant, strict=True, action="block", limits={"cost_usd": "100"})
    fields = [
        ({"reservation_id": "req-1\n"}, "reservation_id"),  # `$` matches before a newline
        ({"reservation_id": "x" * 129}, "reservation_id"),
        ({"reservation_id": ""}, "reservation_id"),
        ({"reservation_id": 12}, "reservation_id"),
        ({"reservation_id": ["a"]}, "reservation_id"),
        ({"reservation_id": "a b"}, "reservation_id"),
        ({"reservation_id": "a\x00b"}, "reservation_id"),
        ({"request_id": "req\n"}, "request_id"),
        ({"request_id": {"a": 1}}, "request_id"),
        ({"agent": "support-bot\n"}, "agent"),
        ({"agent": None}, "agent"),
        ({"agent": ["support-bot"]}, "agent"),
        ({"end_user_hash": "abc\n"}, "end_user_hash"),
        ({"end_user_hash": "x" * 129}, "end_user_hash"),
        ({"end_user_hash": 5}, "end_user_hash"),
        ({"estimate": [1]}, "estimate"),
        ({"estimate": "0.4"}, "estimate"),
        ({"estimate": {"dollars": 1}}, "estimate.dollars"),
    ]
    assert _refused_all(runtime, RESERVE, [(_reserve(**f), key) for f, key in fields]) == []
    assert not Reservation.objects.exists()


def test_runtime_routes__malformed_bodies__400(tenant: Tenant, agent: Agent, runtime: Any) -> None:
    raws: list[str | bytes] = [
        "",
        "null",
        "[]",
        '"text"',
        "{",
        '{"reservation_id": NaN}',
        '{"estimate": {"tokens": Infinity}}',
        "[" * 20_000 + "]" * 20_000,  # under the body size limit, deeper than any parser
        b"\xff\xfe",
    ]
    for path in (RESERVE, SETTLE):
        assert _refused_all(runtime, path, [(raw, "") for raw in raws]) == []
    assert not Reservation.objects.exists()


def test_reserve__another_tenants_or_archived_agent__404(
    tenant: Tenant, other_tenant: Tenant, agent: Agent, runtime: Any
) -> None:
    make_daily(tenant, strict=True, action="block", limits={"cost_usd": "100"})
    _archived_agent(tenant)
    for slug in ("secret-agent", "retired", "Support-Bot"):
        response = runtime(RESERVE, _reserve(agent=slug))
        assert response.status_code == 404, (slug, response.text)
    assert not Reservation.objects.exists()


def test_settle__bad_actuals_and_ids__400_reservation_still_held(
    tenant: Tenant, agent: Agent, runtime: Any
) -> None:
    make_daily(tenant, strict=True, action="block", limits={"cost_usd": "100"})
    assert runtime(RESERVE, _reserve()).json()["granted"] is True
    actuals = [
        ({"cost_usd": "\u0663"}, "actual.cost_usd"),
        ({"tokens": "1e9999999"}, "actual.tokens"),
        ({"tokens": -1}, "actual.tokens"),
        ({"tool_calls": True}, "actual.tool_calls"),
        ({"cost_usd": "NaN"}, "actual.cost_usd"),
        ({"minutes": 3}, "actual.minutes"),
        ([1], "actual"),
    ]
    cases = [({"reservation_id": "req-1:step-1", "actual": a}, key) for a, key in actuals]
    cases += [
        ({"reservation_id": key, "actual": {"cost_usd": "0.1"}}, "reservation_id")
        for key in ["req-1:step-1\n", "x" * 129, "", None, 5]
    ]
    assert _refused_all(runtime, SETTLE, cases) == []
    assert Reservation.objects.get().status == "reserved"


def test_settle__another_tenants_reservation__404(
    tenant: Tenant, other_tenant: Tenant, agent: Agent, asgi_server: str, runtime: Any
) -> None:
    from apps.accounts.runtime_tokens import runtime_token_create

    from .conftest import ACTOR

    make_daily(tenant, strict=True, action="block", limits={"cost_usd": "100"})
    assert runtime(RESERVE, _reserve()).json()["granted"] is True
    _, raw = runtime_token_create(
        actor=ACTOR,
        tenant=other_tenant,
        environment=other_tenant.environments.get(slug="production"),
        name="globex",
    )
    response = requests.post(
        asgi_server + SETTLE,
        json={"reservation_id": "req-1:step-1", "actual": {"cost_usd": "0.1"}},
        headers={"Authorization": raw},
        timeout=30,
    )
    assert response.status_code == 404
    assert Reservation.objects.get().status == "reserved"
