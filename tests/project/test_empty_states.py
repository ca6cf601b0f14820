"""Empty states speak to the role that sees them (issue "The operator's and the approver's
day", item 9): a Viewer or an Approver is never told to create, push or start what their
role may not, and a user without a tenant is told to ask an Admin for one.

Generated from the URL configuration: every page without arguments, and every page of an
empty tenant's agent and environment, is read by each read-only role, with no tenant and
with an empty one; the text of each ``class="empty"`` block is checked."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from apps.core.roles import ROLE_PERMISSIONS, Role
from apps.tenancy.models import Tenant
from tests.factories import AgentFactory, make_user

from .test_authorization_matrix import LOGGED_IN, ROUTES

pytestmark = pytest.mark.django_db

# What only a role that may change things can do, said as an instruction.
INSTRUCTIONS = re.compile(
    r"\b(create (a|an|one|the)|create one|push the first|start one|set a share|"
    r"choose or create|write one|add (queues|environments)|point one at)\b",
    re.IGNORECASE,
)
READ_ONLY = [Role.VIEWER, Role.APPROVER]


class _Empty(HTMLParser):
    """The text of every ``class="empty"`` element."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            self.depth += 1
        elif "empty" in (dict(attrs).get("class") or "").split():
            self.depth = 1
            self.texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.texts[-1] += data


def _empty_texts(html: str) -> list[str]:
    parser = _Empty()
    parser.feed(html)
    return [" ".join(t.split()) for t in parser.texts]


def _pages(role: Role, tenant: Tenant | None) -> list[str]:
    args: dict[str, dict[str, object]] = {"": {}}
    if tenant is not None:
        agent = AgentFactory(tenant=tenant, slug="quiet-bot")
        environment = tenant.environments.get(slug="production")
        args.update(
            {
                "pk_agent": {"pk": agent.pk},
                "agent_pk": {"agent_pk": agent.pk},
                "slug": {"slug": tenant.slug},
                "pk_environment": {"pk": environment.pk},
                "environment_pk": {"environment_pk": environment.pk},
            }
        )
    urls = []
    for name, route in sorted(ROUTES.items()):
        permission = route.methods.get("GET")
        if ":" not in name or permission is None or (route.args or "") not in args:
            continue
        if permission != LOGGED_IN and permission not in ROLE_PERMISSIONS[role]:
            continue
        urls.append(reverse(name, kwargs=args[route.args or ""]))
    return urls


@pytest.mark.parametrize("with_tenant", [False, True], ids=["no tenant", "empty tenant"])
@pytest.mark.parametrize("role", READ_ONLY, ids=[r.value for r in READ_ONLY])
def test_empty_states__read_only_role__no_instruction_it_cannot_follow(
    role: Role, with_tenant: bool, tenant: Tenant
) -> None:
    granted = tenant if with_tenant else None
    user = make_user(role, *([granted] if granted else []), username="reader")
    client = Client()
    client.force_login(user)
    problems = []
    seen = 0
    for url in _pages(role, granted):
        response = client.get(url)
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue
        for text in _empty_texts(response.content.decode()):
            seen += 1
            if INSTRUCTIONS.search(text):
                problems.append(f"{url}: {text!r}")
    assert seen, "no empty state was shown: the walk checked nothing"
    assert not problems, "\n".join(problems)


def test_empty_states__no_tenant__told_to_ask_an_admin(db: None) -> None:
    client = Client()
    client.force_login(make_user(Role.VIEWER, username="nobody"))
    for url in ("/", "/agents/", "/flags/", "/flags/kill-switches/", "/runtimes/"):
        texts = _empty_texts(client.get(url).content.decode())
        assert any("Ask an Admin to grant you access to a tenant" in t for t in texts), url


def test_empty_states__operator_without_tenant__told_to_create_one(db: None) -> None:
    client = Client()
    client.force_login(make_user(Role.OPERATOR, username="builder"))
    texts = _empty_texts(client.get("/agents/").content.decode())
    assert any("Create a tenant first" in t for t in texts)
