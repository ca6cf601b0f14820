"""A form shown again with errors ties them to their fields (issue "Usable on a phone and by
keyboard", item 4; WCAG 1.3.1, 3.3.1): each invalid field is marked aria-invalid and its
aria-describedby names its error list (and its help text) by ids the page carries, and no page
references an id it does not carry. Field rendering is shared (templates/partials/), so a few
forms of different apps stand for all; tests/e2e/test_accessibility.py checks every page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from apps.tenancy.models import Tenant
from tests.html import dangling_idrefs, invalid_fields

pytestmark = pytest.mark.django_db

FORMS = [
    "tenancy:tenant_create",
    "tenancy:agent_create",
    "budgets:create",
    "alerts:channel_create",
    "accounts:user_create",
    "approvals:queue_create",
]


@pytest.mark.parametrize("name", FORMS)
def test_form__posted_empty__each_invalid_field_describes_its_errors(
    admin: User, tenant: Tenant, name: str
) -> None:
    client = Client()
    client.force_login(admin)
    url = reverse(name)
    assert dangling_idrefs(client.get(url).content.decode()) == []

    # what a browser sends for a form left blank (an empty body leaves these forms unbound)
    response = client.post(url, {"name": ""})

    html = response.content.decode()
    assert response.status_code == 200
    invalid = invalid_fields(html)
    assert invalid, "nothing marked invalid"
    for element, described in invalid:
        assert f"{element}_error" in described, (element, described)
    assert dangling_idrefs(html) == []
