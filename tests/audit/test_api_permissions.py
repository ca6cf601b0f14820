"""The audit API in the shared permission suite (tests/api_permissions.py): reads need the
role's view permission and show only the caller's tenants; checkpoints count every tenant's
events, so only a role with ``audit.view_auditcheckpoint`` (Admin) reads them."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Model

from apps.audit.models import AuditCheckpoint, AuditEvent
from apps.audit.services import SystemActor, audit_checkpoint_create, audit_record
from apps.tenancy.models import Tenant

from ..api_permissions import APIViewTestCases

pytestmark = pytest.mark.django_db


class TestAuditEventAPIPermissions(APIViewTestCases.GetObject, APIViewTestCases.ListObjects):
    model = AuditEvent
    list_url = "/api/v1/audit-events/"

    def make_object(self, tenant: Tenant) -> AuditEvent:
        return audit_record(
            actor=SystemActor("test"), action="tenant.updated", target=tenant, tenant=tenant
        )


class TestAuditCheckpointAPIPermissions(APIViewTestCases.ListObjects):
    model = AuditCheckpoint
    list_url = "/api/v1/audit/checkpoints/"
    tenant_scoped = False  # a checkpoint covers every tenant: the role alone decides
    id_key = "event_id"

    def make_object(self, tenant: Tenant) -> AuditCheckpoint:
        audit_record(
            actor=SystemActor("test"), action="tenant.updated", target=tenant, tenant=tenant
        )
        checkpoint = audit_checkpoint_create()
        assert checkpoint is not None
        return checkpoint

    def identity(self, obj: Model) -> Any:
        assert isinstance(obj, AuditCheckpoint)
        return obj.event_id
