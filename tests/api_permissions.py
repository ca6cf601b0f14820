"""One permission suite for every operator API endpoint (NetBox's ``APIViewTestCases`` shape).

An endpoint's test class mixes in what it serves (``GetObject``, ``ListObjects``,
``CreateObject``, ``UpdateObject``, ``DeleteObject``) and says how to make one of its objects
in a tenant and how to call it. Each mixin checks, for its action:

* a role without the model permission: 403, and a refused write changes no row and writes
  no audit event;
* a role with it, on another tenant's object (or into another tenant): 404, nothing changes;
* a role with it, on its own tenant's object: 2xx (a write is audited).

Which roles are which is derived from ``apps.core.roles`` (``ROLE_PERMISSIONS``,
``EVERY_TENANT_ROLES``) through ``pytest_generate_tests``; nothing is typed per role, and
the tests have no branches. A test whose role list is empty (no role may delete tenants) is
reported as skipped by pytest's empty parametrisation.

Every URL additionally has a row in ``tests/project/test_authorization_matrix.py``, the net
that checks each route (UI and runtime API too) for every principal."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from django.db.models import Model
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.core.authz import permission_name
from apps.core.roles import EVERY_TENANT_ROLES, Role, roles_with
from apps.tenancy.models import Tenant

from .conftest import api_as
from .factories import make_user
from .tables import row_counts


def _rows() -> dict[str, int]:
    """Row counts of every model: what a refused request must leave as it was."""
    return row_counts()


def _state(obj: Model | None) -> tuple[dict[str, int], int, list[dict[str, Any]]]:
    values = [] if obj is None else list(type(obj)._default_manager.filter(pk=obj.pk).values())
    return _rows(), AuditEvent.objects.count(), values


def _client(role: Role, tenant: Tenant) -> APIClient:
    """A user of ``role`` granted ``tenant`` (and no other)."""
    return api_as(make_user(role, tenant))


# fixture name → (action, which roles): "granted_add" are the roles that may add, "denied_add"
# those that may not, "scoped_add" those that may but see only the tenants granted to them.
_KINDS = {
    "granted": lambda perm: roles_with(perm),
    "denied": lambda perm: [r for r in Role if r not in roles_with(perm)],
    "scoped": lambda perm: [r for r in roles_with(perm) if r not in EVERY_TENANT_ROLES],
}


class APIViewTestCases:
    class Base:
        """``model``: whose permissions the endpoint checks; ``list_url``: its collection."""

        model: ClassVar[type[Model]]
        list_url: ClassVar[str] = ""
        #: the key of a returned object that holds the id of what ``make_object`` made
        id_key: ClassVar[str] = "id"
        #: whether a create names a tenant (directly or through a parent) that can be foreign
        create_is_scoped: ClassVar[bool] = True
        #: False for a model of no tenant (users): the role alone decides, no 404 case
        tenant_scoped: ClassVar[bool] = True

        def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
            for name in metafunc.fixturenames:
                kind, _, action = name.partition("_")
                if kind in _KINDS and action in ("view", "add", "change", "delete"):
                    roles = _KINDS[kind](permission_name(self.model, action))
                    if kind == "scoped" and not self.tenant_scoped:
                        roles = []  # no tenant to be outside of
                    if name == "scoped_add" and not self.create_is_scoped:
                        roles = []  # nothing to be out of scope of (a new tenant)
                    metafunc.parametrize(name, roles, ids=[r.value for r in roles])

        def make_object(self, tenant: Tenant) -> Model:
            raise NotImplementedError

        def detail_url(self, obj: Model) -> str:
            return f"{self.list_url}{obj.pk}/"

        def identity(self, obj: Model) -> Any:
            """What the API shows under ``id_key`` for ``obj``."""
            return obj.pk

    class GetObject(Base):
        def test_get__role_without_view__403(self, denied_view: Role, tenant: Tenant) -> None:
            obj = self.make_object(tenant)
            response = _client(denied_view, tenant).get(self.detail_url(obj))
            assert response.status_code == 403, response.content

        def test_get__other_tenants_object__404(
            self, scoped_view: Role, tenant: Tenant, other_tenant: Tenant
        ) -> None:
            obj = self.make_object(other_tenant)
            response = _client(scoped_view, tenant).get(self.detail_url(obj))
            assert response.status_code == 404, response.content

        def test_get__role_with_view__200(self, granted_view: Role, tenant: Tenant) -> None:
            obj = self.make_object(tenant)
            response = _client(granted_view, tenant).get(self.detail_url(obj))
            assert response.status_code == 200, response.content
            assert response.json()[self.id_key] == self.identity(obj)

    class ListObjects(Base):
        def test_list__role_without_view__403(self, denied_view: Role, tenant: Tenant) -> None:
            self.make_object(tenant)
            response = _client(denied_view, tenant).get(self.list_url)
            assert response.status_code == 403, response.content

        def test_list__other_tenants_object__not_listed(
            self, scoped_view: Role, tenant: Tenant, other_tenant: Tenant
        ) -> None:
            foreign = self.make_object(other_tenant)
            response = _client(scoped_view, tenant).get(self.list_url)
            assert response.status_code == 200, response.content
            assert self.identity(foreign) not in [
                row[self.id_key] for row in response.json()["results"]
            ]

        def test_list__role_with_view__200_with_own_object(
            self, granted_view: Role, tenant: Tenant
        ) -> None:
            obj = self.make_object(tenant)
            response = _client(granted_view, tenant).get(self.list_url)
            assert response.status_code == 200, response.content
            assert self.identity(obj) in [row[self.id_key] for row in response.json()["results"]]

    class CreateObject(Base):
        """``create(client, tenant)`` posts a valid new object into ``tenant``;
        ``prepare_create(tenant)`` makes what it needs first (before the rows are counted)."""

        def prepare_create(self, tenant: Tenant) -> None:
            return None

        def create(self, client: APIClient, tenant: Tenant) -> Any:
            raise NotImplementedError

        def test_create__role_without_add__403_and_nothing_changes(
            self, denied_add: Role, tenant: Tenant
        ) -> None:
            client = _client(denied_add, tenant)
            self.prepare_create(tenant)
            before = _state(None)
            response = self.create(client, tenant)
            assert response.status_code == 403, response.content
            assert _state(None) == before

        def test_create__into_other_tenant__404_and_nothing_changes(
            self, scoped_add: Role, tenant: Tenant, other_tenant: Tenant
        ) -> None:
            client = _client(scoped_add, tenant)
            self.prepare_create(other_tenant)
            before = _state(None)
            response = self.create(client, other_tenant)
            assert response.status_code == 404, response.content
            assert _state(None) == before

        def test_create__role_with_add__2xx_and_audited(
            self, granted_add: Role, tenant: Tenant
        ) -> None:
            client = _client(granted_add, tenant)
            self.prepare_create(tenant)
            audited = AuditEvent.objects.count()
            response = self.create(client, tenant)
            assert response.status_code in (200, 201), response.content
            assert AuditEvent.objects.count() > audited

    class UpdateObject(Base):
        """``update(client, obj)`` sends a valid change of ``obj`` (PATCH by default)."""

        update_data: ClassVar[dict[str, Any]] = {}

        def update(self, client: APIClient, obj: Model) -> Any:
            return client.patch(self.detail_url(obj), self.update_data, format="json")

        def test_update__role_without_change__403_and_nothing_changes(
            self, denied_change: Role, tenant: Tenant
        ) -> None:
            obj = self.make_object(tenant)
            client = _client(denied_change, tenant)
            before = _state(obj)
            response = self.update(client, obj)
            assert response.status_code == 403, response.content
            assert _state(obj) == before

        def test_update__other_tenants_object__404_and_nothing_changes(
            self, scoped_change: Role, tenant: Tenant, other_tenant: Tenant
        ) -> None:
            obj = self.make_object(other_tenant)
            client = _client(scoped_change, tenant)
            before = _state(obj)
            response = self.update(client, obj)
            assert response.status_code == 404, response.content
            assert _state(obj) == before

        def test_update__role_with_change__200_and_audited(
            self, granted_change: Role, tenant: Tenant
        ) -> None:
            obj = self.make_object(tenant)
            client = _client(granted_change, tenant)
            audited = AuditEvent.objects.count()
            response = self.update(client, obj)
            assert response.status_code == 200, response.content
            assert AuditEvent.objects.count() > audited

    class DeleteObject(Base):
        def delete(self, client: APIClient, obj: Model) -> Any:
            return client.delete(self.detail_url(obj))

        def test_delete__role_without_delete__403_and_nothing_changes(
            self, denied_delete: Role, tenant: Tenant
        ) -> None:
            obj = self.make_object(tenant)
            client = _client(denied_delete, tenant)
            before = _state(obj)
            response = self.delete(client, obj)
            assert response.status_code == 403, response.content
            assert _state(obj) == before

        def test_delete__other_tenants_object__404_and_nothing_changes(
            self, scoped_delete: Role, tenant: Tenant, other_tenant: Tenant
        ) -> None:
            obj = self.make_object(other_tenant)
            client = _client(scoped_delete, tenant)
            before = _state(obj)
            response = self.delete(client, obj)
            assert response.status_code == 404, response.content
            assert _state(obj) == before

        def test_delete__role_with_delete__204_and_audited(
            self, granted_delete: Role, tenant: Tenant
        ) -> None:
            obj = self.make_object(tenant)
            client = _client(granted_delete, tenant)
            audited = AuditEvent.objects.count()
            response = self.delete(client, obj)
            assert response.status_code == 204, response.content
            assert not type(obj)._default_manager.filter(pk=obj.pk).exists()
            assert AuditEvent.objects.count() > audited

    class APIViewTestCase(GetObject, ListObjects, CreateObject, UpdateObject, DeleteObject):
        """Every standard action of a model endpoint."""
