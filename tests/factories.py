from __future__ import annotations

import factory
from django.contrib.auth.models import Group, User
from guardian.shortcuts import assign_perm

from apps.core.roles import TENANT_ACCESS_PERMISSION, Role
from apps.tenancy.models import Agent, Environment, Tenant


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.Sequence(lambda n: f"Tenant {n}")


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    tenant = factory.SubFactory(TenantFactory)
    slug = factory.Sequence(lambda n: f"agent-{n}")
    name = factory.Sequence(lambda n: f"Agent {n}")


class EnvironmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Environment

    tenant = factory.SubFactory(TenantFactory)
    slug = factory.Sequence(lambda n: f"env-{n}")
    name = factory.Sequence(lambda n: f"Env {n}")
    position = factory.Sequence(lambda n: n)


def make_user(role: Role | None, *tenants: Tenant, username: str | None = None) -> User:
    user = User.objects.create_user(
        username=username or f"{(role or 'norole').lower()}-{User.objects.count()}",
        password="pw-for-tests-123",
    )
    if role is not None:
        group, _ = Group.objects.get_or_create(name=role.value)
        user.groups.add(group)
    for tenant in tenants:
        assign_perm(TENANT_ACCESS_PERMISSION, user, tenant)
    return user
