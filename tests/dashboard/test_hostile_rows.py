"""Hostile names on the Overview (rows drawn with f-strings and ``html.escape``,
remembered per face): HTML, quotes and unicode in agent, environment, budget and kill
switch names are shown escaped on ``/`` and ``/overview/live/``, and a rename is drawn."""

from __future__ import annotations

import html

from django.test import Client

from apps.budgets.models import Budget
from apps.core.roles import Role
from apps.flags.models import KillSwitch
from apps.tenancy.models import Tenant

from ..factories import make_user
from .test_overview import _html, _row, _world

BAD = "<script>alert(\"x\")</script> & 'é≠🚀' \u202e"


def test_overview__hostile_names__escaped_on_page_and_live(tenant: Tenant) -> None:
    agent = _world(tenant, 1)[0]
    production = tenant.environments.get(slug="production")
    client = Client()
    client.force_login(make_user(Role.OPERATOR, tenant))
    before = _row(_html(client), agent, production)
    agent.name = "A " + BAD
    agent.save(update_fields=["name"])
    production.name = "E " + BAD
    production.save(update_fields=["name"])
    Budget.objects.filter(tenant=tenant).update(name="B " + BAD)
    KillSwitch.objects.filter(tenant=tenant).update(tool_pattern="K " + BAD)
    for url in ("/", "/overview/live/"):
        page = _html(client, url)
        row = _row(page, agent, production)
        assert row != before
        assert "<script>" not in page
        for prefix in ("A ", "E ", "B "):
            assert html.escape(prefix + BAD) in row, (url, prefix)
        assert html.escape(BAD) in row.split('class="badge bad" title="')[1].split('"')[0]
