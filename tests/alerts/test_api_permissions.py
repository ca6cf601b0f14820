"""The alerts API in the shared permission suite (tests/api_permissions.py): every role,
expectations derived from apps.core.roles (read: everyone; acknowledge and channels:
Operators and Admins), another tenant's objects 404, refusals change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.db.models import Model
from rest_framework.test import APIClient

from apps.alerts.models import Alert, AlertChannel
from apps.alerts.services import alert_channel_create, alert_raise
from apps.audit.services import SystemActor
from apps.tenancy.models import Tenant

from ..api_permissions import APIViewTestCases

SYSTEM = SystemActor("test")
URL = "http://127.0.0.1:9/alerts"


@pytest.fixture(autouse=True)
def _loopback(loopback_allowed: None) -> None:
    """Channels here point at loopback, which production refuses."""


class TestAlertAPIPermissions(
    APIViewTestCases.GetObject, APIViewTestCases.ListObjects, APIViewTestCases.UpdateObject
):
    model = Alert
    list_url = "/api/v1/alerts/"

    def make_object(self, tenant: Tenant) -> Alert:
        with transaction.atomic():
            return alert_raise(
                tenant=tenant, kind="rollout.paused", severity="warning", title="t", detail=""
            )

    def update(self, client: APIClient, obj: Model) -> Any:
        return client.post(f"{self.detail_url(obj)}acknowledge/")


class TestAlertChannelAPIPermissions(APIViewTestCases.APIViewTestCase):
    model = AlertChannel
    list_url = "/api/v1/alert-channels/"
    update_data = {"enabled": False, "reason": "r"}

    def make_object(self, tenant: Tenant) -> AlertChannel:
        return alert_channel_create(actor=SYSTEM, tenant=tenant, name="existing", url=URL)[0]

    def create(self, client: APIClient, tenant: Tenant) -> Any:
        data = {"tenant": tenant.pk, "name": "new", "url": URL}
        return client.post(self.list_url, data, format="json")


class TestAlertChannelRotateAPIPermissions(APIViewTestCases.UpdateObject):
    model = AlertChannel
    list_url = "/api/v1/alert-channels/"

    def make_object(self, tenant: Tenant) -> AlertChannel:
        return alert_channel_create(actor=SYSTEM, tenant=tenant, name="existing", url=URL)[0]

    def update(self, client: APIClient, obj: Model) -> Any:
        return client.post(f"{self.detail_url(obj)}rotate-secret/", {}, format="json")
