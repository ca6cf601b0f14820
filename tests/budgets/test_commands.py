"""``./manage.py budget``: list, show, create, update, delete through the services, as
``cli:<login>``, with one-line errors and exit status 1."""

from __future__ import annotations

import getpass
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.audit.models import AuditEvent
from apps.budgets.models import Budget
from apps.tenancy.models import Agent, Tenant

from .conftest import ingest, make_budget, roomy_hour

pytestmark = pytest.mark.django_db


def budget(*args: str) -> str:
    out = StringIO()
    call_command("budget", *args, stdout=out)
    return out.getvalue()


CREATE = (
    "create",
    "--tenant",
    "acme",
    "--name",
    "support-bot hourly",
    "--scope",
    "agent",
    "--agent",
    "support-bot",
    "--window",
    "hour",
    "--limit-cost",
    "5",
    "--limit-tool-calls",
    "2000",
    "--action",
    "block",
    "--strict",
)


def test_budget_cli__create__as_the_login_and_audited(tenant: Tenant, agent: Agent) -> None:
    out = budget(*CREATE)
    created = Budget.objects.get()
    assert f"created: budget #{created.pk} support-bot hourly (acme)" in out
    assert created.agent == agent
    assert created.limits()["tool_calls"] == 2000
    assert (created.action, created.strict, created.window) == ("block", True, "hour")
    event = AuditEvent.objects.get(action="budget.created")
    assert event.actor_label == f"cli:{getpass.getuser()}"


def test_budget_cli__list_and_show__state_and_consumption(tenant: Tenant, agent: Agent) -> None:
    assert "no budgets yet" in budget("list")
    roomy_hour(tenant)  # this minute's records and the reads below in one hour window
    ingest(tenant, agent, ["1.00", "1.50"])
    made = make_budget(tenant, limits={"cost_usd": "5"})
    listed = budget("list", "--tenant", "acme")
    assert f"budget #{made.pk} tenant hourly" in listed
    assert "ok, 50.00% of cost usd" in listed
    shown = budget("show", str(made.pk))
    assert "consumed: cost_usd 2.50, tokens 30, requests 2" in shown
    assert "limits: cost_usd 5.00, tokens -" in shown
    assert budget("show", "tenant hourly", "--tenant", "acme").startswith(f"budget #{made.pk}")


def test_budget_cli__update__only_given_options_change(tenant: Tenant, agent: Agent) -> None:
    budget(*CREATE)
    made = Budget.objects.get()
    out = budget(
        "update", str(made.pk), "--limit-cost", "7.50", "--limit-tool-calls", "none", "--no-strict"
    )
    assert "updated:" in out
    made.refresh_from_db()
    assert str(made.limit_cost_usd.normalize()) == "7.5"  # type: ignore[union-attr]
    assert made.limit_tool_calls is None
    assert (made.strict, made.action, made.agent, made.version) == (False, "block", agent, 2)


def test_budget_cli__update_stale_version__refused(tenant: Tenant) -> None:
    made = make_budget(tenant)
    with pytest.raises(CommandError, match="changed"):
        budget("update", str(made.pk), "--name", "x", "--expected-version", "7")
    made.refresh_from_db()
    assert made.name == "tenant hourly"


def test_budget_cli__delete__audited_with_the_reason(tenant: Tenant) -> None:
    made = make_budget(tenant)
    assert "deleted" in budget("delete", str(made.pk), "--reason", "replaced")
    assert not Budget.objects.exists()
    assert AuditEvent.objects.filter(action="budget.deleted", reason="replaced").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            (
                "create",
                "--tenant",
                "nope",
                "--name",
                "n",
                "--scope",
                "tenant",
                "--window",
                "day",
                "--limit-cost",
                "1",
            ),
            "tenant 'nope': not found",
        ),
        (
            (
                "create",
                "--tenant",
                "acme",
                "--name",
                "n",
                "--scope",
                "agent",
                "--agent",
                "ghost",
                "--window",
                "day",
                "--limit-cost",
                "1",
            ),
            "agent 'ghost': not found",
        ),
        (
            (
                "create",
                "--tenant",
                "acme",
                "--name",
                "n",
                "--scope",
                "tenant",
                "--window",
                "day",
                "--limit-cost",
                "-1",
            ),
            "limits.cost_usd",
        ),
        (
            ("create", "--tenant", "acme", "--name", "n", "--scope", "tenant", "--window", "day"),
            "limits: Set at least one limit",
        ),
        (("show", "999999"), "budget '999999': not found"),
        (("delete", "999999", "--reason", "x"), "not found"),
    ],
)
def test_budget_cli__bad_input__clear_error_and_nothing_stored(
    tenant: Tenant, agent: Agent, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(".", r"\.")):
        budget(*args)
    assert not Budget.objects.exists()
