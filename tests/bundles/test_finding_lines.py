"""An error about text inside a block scalar points at the line of that text, not at the
``template: |`` line above it: the API's ``lines``, the editor's annotated source and
``./manage.py bundle validate`` alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from apps.bundles.presenters import findings
from apps.bundles.validation import validate_source
from apps.core.roles import Role
from apps.tenancy.models import Agent, Tenant

from ..conftest import api_as
from ..factories import make_user
from .conftest import demo_text

POINTER = "/prompts/system/template"


def _source() -> tuple[str, int, int]:
    """support-bot v1 with two undeclared variables on two lines inside its system template
    (and a malformed placeholder on the second); returns the text and both lines."""
    text = demo_text("support-bot-v1").replace(
        "      Use the knowledge base",
        "      Quote the order {{ order_id }} back.\n"
        "      Sign as {{agent_name}}, never as {{ Bad-Name }}.\n"
        "      Use the knowledge base",
        1,
    )
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines, 1) if "{{ order_id }}" in line)
    assert not lines[first - 1].strip().startswith("template:")
    return text, first, first + 1


def test_findings__undeclared_variables__each_on_its_own_line() -> None:
    text, first, second = _source()
    result = validate_source(text.encode())
    by_message = {f.message.split(":")[0]: f.line for f in findings(text, result.errors, {})}
    assert by_message["Uses the undeclared variable 'order_id'"] == first
    assert by_message["Uses the undeclared variable 'agent_name'"] == second
    assert by_message["Malformed placeholder '{{ Bad-Name }}'"] == second
    assert result.lines[POINTER] == first  # the API's line of the pointer: its first


@pytest.mark.django_db
def test_validate_api__line_of_the_variable(tenant: Tenant) -> None:
    text, first, _second = _source()
    client: APIClient = api_as(make_user(Role.OPERATOR, tenant))
    response = client.post(
        "/api/v1/bundles/validate/", text.encode(), content_type="application/yaml"
    )
    assert response.status_code == 400, response.content
    assert response.json()["lines"][POINTER] == first


def test_cli_validate__line_of_the_variable(tmp_path: Path) -> None:
    text, first, second = _source()
    path = tmp_path / "bot.yaml"
    path.write_text(text)
    with pytest.raises(CommandError) as refused:
        call_command("bundle", "validate", str(path))
    out = str(refused.value)
    assert f"{POINTER} (line {first}): Uses the undeclared variable 'order_id'" in out
    assert f"{POINTER} (line {second}): Uses the undeclared variable 'agent_name'" in out


@pytest.mark.django_db
def test_editor__undeclared_variable_shown_on_its_line(tenant: Tenant, agent: Agent) -> None:
    text, first, _second = _source()
    client = Client()
    client.force_login(make_user(Role.OPERATOR, tenant))
    html = client.post(
        f"/bundles/agents/{agent.pk}/new/", {"source": text, "message": "m", "action": "check"}
    ).content.decode()
    assert "undeclared variable" in html
    assert f'<a href="#L{first}">line {first}</a>' in html
    assert f'<tr id="L{first}" class="has-error">' in html
