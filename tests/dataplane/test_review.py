"""Review findings of the reference runtime's budgets: a strict ``end_user`` budget does not
hold a request that has no end user (the control plane holds nothing for it), so such a
request neither fails closed past the grace nor asks the control plane to reserve."""

from __future__ import annotations

from datetime import timedelta

from dataplane.client import Runtime
from dataplane.guardrails import RequestContext

from .conftest import snapshot_content
from .fake_control_plane import FakeControlPlane
from .test_budgets import AGENT, ALICE, Clock, budget, clock, runtime  # noqa: F401 - fixtures

_LIMITS = {"cost_usd": None, "tokens": None, "requests": None, "tool_calls": 5}


def _end_user_strict(plane: FakeControlPlane, runtime: Runtime) -> None:  # noqa: F811
    plane.publish(
        snapshot_content(
            1,
            budgets=[budget(scope="end_user", state="ok", strict=True, limits=_LIMITS)],
        )
    )
    runtime.sync_once()
    assert runtime.status().revision == 1


def test_unreachable_past_grace__strict_end_user_budget__request_without_end_user_open(
    control_plane: FakeControlPlane,
    runtime: Runtime,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    _end_user_strict(control_plane, runtime)
    control_plane.set_unavailable(True)
    runtime.sync_once()
    clock.now += timedelta(seconds=61)

    anonymous = runtime.guard(AGENT, "s-1", RequestContext(end_user_hash=None))
    assert anonymous.check_step().allowed
    known = runtime.guard(AGENT, "s-2", RequestContext(end_user_hash=ALICE))
    assert known.check_step().error_code == "budget:12:unreachable"


def test_reserve__strict_end_user_budget__no_end_user_granted_locally(
    control_plane: FakeControlPlane,
    runtime: Runtime,  # noqa: F811
    clock: Clock,  # noqa: F811
) -> None:
    _end_user_strict(control_plane, runtime)
    control_plane.set_unavailable(True)
    clock.now += timedelta(seconds=61)

    result = runtime.budget_reserve(
        reservation_id="req-1:1", request_id="req-1", agent=AGENT, estimate={"tool_calls": 1}
    )
    assert (result.granted, result.source) == (True, "local")
    guard = runtime.guard(AGENT, "s-1", RequestContext(end_user_hash=None))
    assert guard.reserve(
        reservation_id="req-2:1", request_id="req-2", estimate={"tool_calls": 1}
    ).granted
