"""``apps.core.authz``: the one check of a role and a tenant scope (docs/decisions/0018)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import Http404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate

from apps.audit.models import AuditCheckpoint
from apps.bundles.models import Evaluation, SigningKey
from apps.core.api import ScopedViewSet, permission_action
from apps.core.authz import (
    SystemActor,
    authorize,
    permission_name,
    restrict,
    tenant_scope,
    visible_tenant_ids,
)
from apps.core.roles import Role, roles_with
from apps.flags.models import Flag, KillSwitch
from apps.flags.services import kill_switch_engage
from apps.tenancy.models import Agent, Environment, Tenant

from ..factories import AgentFactory, make_user

pytestmark = pytest.mark.django_db
SYSTEM = SystemActor("test")


def test_permission_name__model_and_action__django_codename() -> None:
    assert permission_name(Flag, "change") == "flags.change_flag"


@pytest.mark.parametrize(
    ("model", "scope"),
    [
        (Tenant, ("pk", False)),
        (Agent, ("tenant", False)),
        (Environment, ("tenant", False)),
        (Flag, ("environment__tenant", False)),
        (Evaluation, ("version__agent__tenant", False)),
        (KillSwitch, ("tenant", True)),
        (AuditCheckpoint, (None, False)),
        (User, (None, False)),
    ],
)
def test_tenant_scope__convention_declaration_or_registration(
    model: type[models.Model], scope: tuple[str | None, bool]
) -> None:
    assert tenant_scope(model) == scope


def test_tenant_scope__model_without_a_path__fails_closed() -> None:
    with pytest.raises(ImproperlyConfigured):
        tenant_scope(SigningKey)


def test_restrict__role_without_the_permission__nothing(tenant: Tenant) -> None:
    AgentFactory(tenant=tenant)
    assert Role.VIEWER not in roles_with("tenancy.change_agent")
    user = make_user(Role.VIEWER, tenant)
    assert list(restrict(Agent.objects.all(), user, "change")) == []


def test_restrict__granted_role__own_tenants_only(tenant: Tenant, other_tenant: Tenant) -> None:
    own = AgentFactory(tenant=tenant)
    user = make_user(Role.OPERATOR, tenant)
    assert list(restrict(Agent.objects.all(), user, "change")) == [own]


def test_restrict__every_tenant_role__all_rows(tenant: Tenant, other_tenant: Tenant) -> None:
    AgentFactory(tenant=tenant)
    user = make_user(Role.ADMIN)
    assert restrict(Agent.objects.all(), user, "view").count() == Agent.objects.count() == 2
    assert visible_tenant_ids(user) is None


def test_restrict__role_but_no_tenant_grant__nothing(tenant: Tenant) -> None:
    AgentFactory(tenant=tenant)
    user = make_user(Role.OPERATOR)
    assert list(restrict(Agent.objects.all(), user, "view")) == []


def test_restrict__anonymous_or_inactive__nothing(tenant: Tenant) -> None:
    AgentFactory(tenant=tenant)
    user = make_user(Role.OPERATOR, tenant)
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert list(restrict(Agent.objects.all(), None, "view")) == []
    assert list(restrict(Agent.objects.all(), user, "view")) == []


def test_restrict__global_kill_switch__seen_by_every_role_with_view(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    global_switch = kill_switch_engage(
        actor=SYSTEM, kind="tool_disabled", scope="global", tool_pattern="refund", reason="r"
    )
    foreign = kill_switch_engage(
        actor=SYSTEM,
        kind="tool_disabled",
        scope="tenant",
        tenant=other_tenant,
        tool_pattern="refund",
        reason="theirs",
    )
    user = make_user(Role.VIEWER, tenant)
    visible = list(restrict(KillSwitch.objects.all(), user, "view"))
    assert global_switch in visible and foreign not in visible


def test_restrict__user_without_role_group__nothing_even_with_a_grant(tenant: Tenant) -> None:
    user = make_user(None, tenant)
    assert Group.objects.filter(user=user).count() == 0
    assert list(restrict(Tenant.objects.all(), user, "view")) == []


def test_authorize__system_actor__passes(tenant: Tenant) -> None:
    authorize(SYSTEM, "tenancy.change_tenant", tenant)


def test_authorize__role_without_permission__403(tenant: Tenant) -> None:
    with pytest.raises(PermissionDenied):
        authorize(make_user(Role.VIEWER, tenant), "tenancy.change_tenant", tenant)


def test_authorize__other_tenant__404(tenant: Tenant, other_tenant: Tenant) -> None:
    with pytest.raises(Http404):
        authorize(make_user(Role.OPERATOR, tenant), "tenancy.change_tenant", other_tenant)


# --------------------------------------------------------------------------- the API base view


class _BareAgentViewSet(ScopedViewSet):
    """What a new app writes: a selector, no permission code."""

    def scoped_queryset(self) -> QuerySet[Agent]:
        return Agent.objects.all()  # even unscoped: the base view restricts it

    def list(self, request: Request) -> Response:
        return Response([a.pk for a in self.get_queryset()])

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(self.get_object().pk)

    def create(self, request: Request) -> Response:
        return Response(status=201)

    def partial_update(self, request: Request, pk: str) -> Response:
        return Response(self.get_object().pk)


def _call(user: User, method: str, pk: int | None = None) -> Response:
    actions = {"get": "retrieve" if pk else "list", "post": "create", "patch": "partial_update"}
    view = _BareAgentViewSet.as_view({method: actions[method]})
    request = getattr(APIRequestFactory(), method)("/", {}, format="json")
    force_authenticate(request, user=user)
    response: Response = view(request, **({"pk": str(pk)} if pk else {}))
    return response


def test_base_view__new_viewset_without_permission_code__role_and_scope_enforced(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    own = AgentFactory(tenant=tenant)
    foreign = other_tenant.agents.get()
    viewer = make_user(Role.VIEWER, tenant)
    operator = make_user(Role.OPERATOR, tenant)

    assert _call(viewer, "get").data == [own.pk]
    assert _call(viewer, "get", own.pk).status_code == 200
    assert _call(viewer, "get", foreign.pk).status_code == 404
    assert _call(viewer, "post").status_code == 403
    assert _call(viewer, "patch", own.pk).status_code == 403
    assert _call(operator, "post").status_code == 201
    assert _call(operator, "patch", own.pk).status_code == 200
    assert _call(operator, "patch", foreign.pk).status_code == 404


def test_permission_action__methods_and_detail__view_add_change_delete() -> None:
    factory = APIRequestFactory()

    class View:
        action = "x"
        detail = False

    class Detail(View):
        detail = True

    assert permission_action(Request(factory.get("/")), View()) == "view"
    assert permission_action(Request(factory.post("/")), View()) == "add"
    assert permission_action(Request(factory.post("/")), Detail()) == "change"
    assert permission_action(Request(factory.put("/")), Detail()) == "change"
    assert permission_action(Request(factory.delete("/")), Detail()) == "delete"
