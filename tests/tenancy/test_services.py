"""Environment positions: a new environment goes after the last active one, whatever
position that one sits at (0 included)."""

from __future__ import annotations

import pytest

from apps.audit.services import SystemActor
from apps.tenancy.models import Environment
from apps.tenancy.services import environment_create, environment_move, tenant_create

pytestmark = pytest.mark.django_db
SYSTEM = SystemActor("system:test")


@pytest.mark.parametrize("count", [2, 3, 5])
def test_environment_create__after_one_at_position_0__goes_last(count: int) -> None:
    tenant = tenant_create(
        actor=SYSTEM, slug=f"t{count}", name="T", with_default_environments=False
    )

    created = [
        environment_create(actor=SYSTEM, tenant=tenant, slug=f"env-{n}", name=f"Env {n}")
        for n in range(count)
    ]

    assert [e.position for e in created] == list(range(count))


@pytest.mark.parametrize("first_position", [0, 1, 7])
def test_environment_create__first_given_position__next_goes_right_after(
    first_position: int,
) -> None:
    tenant = tenant_create(actor=SYSTEM, slug="t", name="T", with_default_environments=False)
    environment_create(actor=SYSTEM, tenant=tenant, slug="a", name="A", position=first_position)

    second = environment_create(actor=SYSTEM, tenant=tenant, slug="b", name="B")

    assert second.position == first_position + 1


def test_environment_move__two_at_0_and_1__swap() -> None:
    tenant = tenant_create(actor=SYSTEM, slug="t", name="T", with_default_environments=False)
    first = environment_create(actor=SYSTEM, tenant=tenant, slug="a", name="A")
    environment_create(actor=SYSTEM, tenant=tenant, slug="b", name="B")

    environment_move(actor=SYSTEM, environment=first, direction="down")

    order = Environment.objects.filter(tenant=tenant).order_by("position")
    assert list(order.values_list("slug", flat=True)) == ["b", "a"]
