"""The budgets API in the shared permission suite (tests/api_permissions.py): every role,
expectations derived from apps.core.roles (read: everyone; writes: Operators and Admins),
another tenant's budgets 404, refusals change nothing."""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework.test import APIClient

from apps.budgets.models import Budget
from apps.tenancy.models import Tenant

from ..api_permissions import APIViewTestCases
from .conftest import make_budget


class TestBudgetAPIPermissions(APIViewTestCases.APIViewTestCase):
    model = Budget
    list_url = "/api/v1/budgets/"
    update_data = {"limits": {"cost_usd": "7.50"}, "reason": "r"}

    def make_object(self, tenant: Tenant) -> Budget:
        return make_budget(tenant, name="existing")

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        data = {
            "tenant": tenant.pk,
            "name": "new",
            "scope": "tenant",
            "window": "day",
            "limits": {"requests": 1000},
        }
        return client.post(self.list_url, data, format="json")


class TestBudgetReplaceAPIPermissions(APIViewTestCases.UpdateObject):
    model = Budget
    list_url = "/api/v1/budgets/"

    def make_object(self, tenant: Tenant) -> Budget:
        return make_budget(tenant, name="existing")

    def update(self, client: APIClient, obj: Model) -> Any:
        data = {"name": "renamed", "scope": "tenant", "window": "week", "limits": {"tokens": 5}}
        return client.put(self.detail_url(obj), data, format="json")


class TestBudgetStatusAPIPermissions(APIViewTestCases.GetObject):
    model = Budget
    list_url = "/api/v1/budgets/"

    def make_object(self, tenant: Tenant) -> Budget:
        return make_budget(tenant, name="existing")

    def detail_url(self, obj: Model) -> str:
        return f"{self.list_url}{obj.pk}/status/"
