"""Budgets in the reference runtime (docs/budgets.md): the snapshot's ``budgets`` parsed,
enforced by the guard (block, degrade, alert; per scope kind; until ``resets_at``), the
per-request caps reported as ``budget_blocked``, reservations for strict budgets against the
fake control plane (granted, refused, failing closed past the grace), and the simulator."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from dataplane.canonical import digest
from dataplane.client import Runtime
from dataplane.guardrails import RequestContext, RequestGuard
from dataplane.simulate import FakeAgent, run_requests, snapshot_for, synthetic_request
from dataplane.simulate.agent import Traits
from dataplane.simulate.fleet import usage_record
from dataplane.snapshot import Budget, BudgetLimits, Degrade, Snapshot, SnapshotError

from .bundles import GOOD_SUPPORT_BOT
from .conftest import snapshot_content
from .fake_control_plane import TOKEN, FakeControlPlane

AGENT = "support-bot"
OTHER = "billing-bot"
NOW = datetime(2026, 12, 5, 7, 30, tzinfo=UTC)
RESETS_AT = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
ALICE, BOB = "a" * 64, "b" * 64
SEARCHING = (
    "You are the support assistant of Acme. Search until certain: look the order up again "
    "whenever in doubt."
)


def budget(**overrides: Any) -> dict[str, Any]:
    """A budget as the snapshot lists it (the example of docs/budgets.md)."""
    data: dict[str, Any] = {
        "id": 12,
        "name": "support-bot hourly",
        "scope": "agent",
        "agent": AGENT,
        "window": "hour",
        "window_start": "2026-12-05T07:00:00Z",
        "resets_at": "2026-12-05T08:00:00Z",
        "limits": {"cost_usd": "5.00", "tokens": None, "requests": None, "tool_calls": 2000},
        "action": "block",
        "degrade": None,
        "strict": False,
        "state": "exhausted",
        "exhausted_subjects": [],
    }
    data.update(overrides)
    return data


def parse(budgets: Any, *, absent: bool = False) -> Snapshot:
    content = snapshot_content(1)
    if absent:
        del content["budgets"]
    else:
        content["budgets"] = budgets
    return Snapshot.parse(content, digest=digest(content))


def guard_for(
    budgets: list[dict[str, Any]],
    *,
    agent: str = AGENT,
    user: str | None = ALICE,
    bundle: dict[str, Any] | None = None,
    kill_switches: list[dict[str, Any]] | None = None,
    clock: Callable[[], datetime] = lambda: NOW,
) -> RequestGuard:
    snapshot = snapshot_for(
        agent, bundle or GOOD_SUPPORT_BOT, budgets=budgets, kill_switches=kill_switches or ()
    )
    return RequestGuard(
        snapshot,
        agent=agent,
        session_id="session-1",
        context=RequestContext(end_user_role="customer", end_user_hash=user),
        clock=clock,
    )


def bundle_with_limits(prompt: str | None = None, **limits: Any) -> dict[str, Any]:
    bundle = copy.deepcopy(GOOD_SUPPORT_BOT)
    bundle["policies"]["limits"] = limits
    if prompt is not None:
        bundle["prompts"]["system"]["template"] = prompt
    return bundle


# -- the snapshot's budgets --------------------------------------------------------------------


def test_parse__documented_budget__typed_and_frozen() -> None:
    degrade = {"mode": "model", "model": "gpt-4o-mini"}
    snapshot = parse([budget(action="degrade", degrade=degrade, strict=True)])

    (parsed,) = snapshot.budgets
    assert parsed == Budget(
        id=12,
        name="support-bot hourly",
        scope="agent",
        agent=AGENT,
        window="hour",
        window_start=datetime(2026, 12, 5, 7, 0, tzinfo=UTC),
        resets_at=RESETS_AT,
        limits=BudgetLimits(cost_usd=Decimal("5.00"), tool_calls=2000),
        action="degrade",
        degrade=Degrade(mode="model", model="gpt-4o-mini"),
        strict=True,
        state="exhausted",
        exhausted_subjects=frozenset(),
    )
    assert parsed.resets_at.tzinfo is not None
    with pytest.raises(AttributeError):
        parsed.state = "ok"  # type: ignore[misc]


def test_parse__end_user_subjects__a_frozenset() -> None:
    snapshot = parse([budget(scope="end_user", state="ok", exhausted_subjects=[ALICE])])

    assert snapshot.budgets[0].exhausted_subjects == frozenset({ALICE})


def test_parse__no_budgets_field__an_older_control_plane_means_no_budgets() -> None:
    assert parse(None, absent=True).budgets == ()


@pytest.mark.parametrize(
    "bad",
    [
        "not a list",
        ["not an object"],
        [budget(scope="galaxy")],
        [budget(action="pray")],
        [budget(scope="agent", agent=None)],
        [budget(limits={"cost_usd": None, "tokens": None})],
        [budget(limits={"cost_usd": "five"})],
        [budget(limits={"tool_calls": -1})],
        [budget(resets_at="2026-12-05T08:00:00")],
        [budget(resets_at=None)],
        [budget(action="degrade", degrade=None)],
        [budget(action="degrade", degrade={"mode": "model"})],
        [budget(state="sleepy")],
        [budget(strict="yes")],
        [budget(exhausted_subjects="alice")],
    ],
    ids=lambda bad: str(bad)[:40],
)
def test_parse__malformed_budget__snapshot_refused(bad: Any) -> None:
    with pytest.raises(SnapshotError):
        parse(bad)


def test_runtime__malformed_budget__nacked_and_previous_kept(
    control_plane: FakeControlPlane,
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = Runtime(control_plane.url, TOKEN, "budget-nack")
    runtime.sync_once()
    control_plane.publish(snapshot_content(2, budgets=[budget(scope="galaxy")]))

    runtime.sync_once()

    assert runtime.status().revision == 1
    assert runtime.status().rejected_revision == 2
    assert "scope" in runtime.status().rejection


# -- block, degrade, alert ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "agent", "user", "blocked"),
    [
        ({"scope": "tenant", "agent": None}, AGENT, ALICE, True),
        ({"scope": "tenant", "agent": None}, OTHER, ALICE, True),
        ({"scope": "tenant", "agent": None, "state": "ok"}, AGENT, ALICE, False),
        ({"scope": "agent"}, AGENT, ALICE, True),
        ({"scope": "agent"}, OTHER, ALICE, False),
        (
            {"scope": "tenant_agent", "agent": None, "state": "ok", "exhausted_subjects": [AGENT]},
            AGENT,
            ALICE,
            True,
        ),
        (
            {"scope": "tenant_agent", "agent": None, "state": "ok", "exhausted_subjects": [OTHER]},
            AGENT,
            ALICE,
            False,
        ),
        ({"scope": "end_user", "state": "ok", "exhausted_subjects": [ALICE]}, AGENT, ALICE, True),
        ({"scope": "end_user", "state": "ok", "exhausted_subjects": [ALICE]}, AGENT, BOB, False),
        ({"scope": "end_user", "state": "ok", "exhausted_subjects": [ALICE]}, AGENT, None, False),
    ],
)
def test_guard__block_budget__refuses_the_requests_of_its_exhausted_scope(
    overrides: dict[str, Any], agent: str, user: str | None, blocked: bool
) -> None:
    guard = guard_for([budget(**overrides)], agent=agent, user=user)

    step = guard.check_step()
    tool = guard.check_tool_call("lookup_order", {"order_id": "A00000001"})
    message = guard.check_input("where is my order?")

    assert [d.error_code == "budget:12" for d in (step, tool, message)] == [blocked] * 3
    assert [d.outcome == "budget_blocked" for d in (step, tool, message)] == [blocked] * 3
    assert (guard.budget_stop is not None) is blocked


def test_guard__block_budget__refusal_names_the_budget() -> None:
    decision = guard_for([budget()]).check_step()

    assert decision.denied
    assert decision.check == "budget"
    assert "budget #12 (support-bot hourly" in decision.reason


def test_guard__resets_at_passes__unblocked_without_a_new_snapshot() -> None:
    now = [NOW]
    guard = guard_for([budget()], clock=lambda: now[0])
    assert guard.check_step().error_code == "budget:12"

    now[0] = RESETS_AT

    assert guard.check_step().allowed


def test_guard__kill_switch_and_block_budget__kill_switch_decides() -> None:
    stopped = {"id": 3, "kind": "agent_stopped", "agent": AGENT, "scope": "agent", "reason": "x"}
    guard = guard_for([budget()], kill_switches=[stopped])

    assert guard.check_step().check == "kill_switch"
    assert guard.check_tool_call("lookup_order", {"order_id": "A00000001"}).check == "kill_switch"
    assert guard.check_input("hello").allowed  # the kill switch refuses at the first step
    assert guard.budget_stop is None


@pytest.mark.parametrize(
    "scope_overrides",
    [
        {"scope": "tenant", "agent": None},
        {"scope": "agent"},
        {"scope": "tenant_agent", "agent": None, "state": "ok", "exhausted_subjects": [AGENT]},
        {"scope": "end_user", "state": "ok", "exhausted_subjects": [ALICE]},
    ],
)
def test_guard__draft_only_degrade__writes_wait_as_under_the_draft_only_kill_switch(
    scope_overrides: dict[str, Any],
) -> None:
    degraded = guard_for(
        [budget(action="degrade", degrade={"mode": "draft_only"}, **scope_overrides)]
    )
    switch = {"id": 4, "kind": "agent_mode", "mode": "draft_only", "agent": AGENT, "scope": "a"}
    switched = guard_for([], kill_switches=[switch])
    calls: list[tuple[str, dict[str, Any], bool]] = [
        ("lookup_order", {"order_id": "A00000001"}, False),
        ("open_ticket", {"team": "refunds", "summary": "s"}, False),
        ("open_ticket", {"team": "refunds", "summary": "s"}, True),
        ("delete_everything", {}, False),
    ]

    def verdicts(guard: RequestGuard) -> list[str]:
        return [
            guard.check_tool_call(tool, args, approved=approved).verdict.value
            for tool, args, approved in calls
        ]

    assert verdicts(degraded) == verdicts(switched) == ["allow", "needs_approval", "allow", "deny"]
    assert degraded.check_step().allowed
    assert degraded.budget_stop is None


@pytest.mark.parametrize(
    "scope_overrides",
    [
        {"scope": "tenant", "agent": None},
        {"scope": "agent"},
        {"scope": "tenant_agent", "agent": None, "state": "ok", "exhausted_subjects": [AGENT]},
        {"scope": "end_user", "state": "ok", "exhausted_subjects": [ALICE]},
    ],
)
def test_guard__model_degrade__names_the_cheaper_model(scope_overrides: dict[str, Any]) -> None:
    degrade = {"mode": "model", "model": "gpt-4o-mini"}
    at_limit = guard_for([budget(action="degrade", degrade=degrade, **scope_overrides)])
    other_user = guard_for([budget(action="degrade", degrade=degrade, **scope_overrides)], user=BOB)

    assert at_limit.model_override == "gpt-4o-mini"
    assert at_limit.check_step().allowed
    expected_for_bob = None if scope_overrides["scope"] == "end_user" else "gpt-4o-mini"
    assert other_user.model_override == expected_for_bob


@pytest.mark.parametrize(
    "scope_overrides",
    [
        {"scope": "tenant", "agent": None},
        {"scope": "agent"},
        {"scope": "tenant_agent", "agent": None, "state": "ok", "exhausted_subjects": [AGENT]},
        {"scope": "end_user", "state": "ok", "exhausted_subjects": [ALICE]},
    ],
)
def test_guard__alert_budget_at_its_limit__changes_nothing(scope_overrides: dict[str, Any]) -> None:
    guard = guard_for([budget(action="alert", **scope_overrides)])

    assert guard.check_step().allowed
    assert guard.check_tool_call("open_ticket", {"team": "refunds", "summary": "s"}).allowed
    assert guard.model_override is None
    assert guard.budget_stop is None


# -- per-request caps --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "use", "cap"),
    [
        ({"max_steps": 1}, {"tokens": 10}, "max_steps"),
        ({"max_total_tokens": 100}, {"tokens": 100}, "max_total_tokens"),
        ({"max_cost_usd": 0.01}, {"cost_usd": Decimal("0.01")}, "max_cost_usd"),
    ],
)
def test_guard__step_cap_hit__budget_blocked_with_the_caps_name(
    limits: dict[str, Any], use: dict[str, Any], cap: str
) -> None:
    guard = guard_for([], bundle=bundle_with_limits(**limits))
    assert guard.check_step().allowed
    guard.record_step(**use)

    decision = guard.check_step()

    assert (decision.denied, decision.check) == (True, "limit")
    assert (decision.outcome, decision.error_code) == ("budget_blocked", f"cap:{cap}")
    assert guard.budget_stop == decision


def test_guard__tool_call_cap_hit__budget_blocked_cap_max_tool_calls() -> None:
    guard = guard_for([], bundle=bundle_with_limits(max_tool_calls=1))
    args = {"order_id": "A00000001"}
    assert guard.check_tool_call("lookup_order", args).allowed
    guard.record_tool_call("lookup_order", ok=True)

    decision = guard.check_tool_call("lookup_order", args)

    assert (decision.outcome, decision.error_code) == ("budget_blocked", "cap:max_tool_calls")


def test_guard__retries_used_up__stays_a_policy_refusal() -> None:
    guard = guard_for([], bundle=bundle_with_limits(max_retries_per_tool=0))
    guard.record_tool_call("lookup_order", ok=False)

    decision = guard.check_tool_call("lookup_order", {"order_id": "A00000001"})

    assert (decision.denied, decision.check, decision.outcome) == (True, "limit", "")


@pytest.mark.parametrize(
    ("limits", "cap"),
    [
        ({"max_steps": 1}, "max_steps"),
        ({"max_tool_calls": 0}, "max_tool_calls"),
        ({"max_total_tokens": 100}, "max_total_tokens"),
        ({"max_cost_usd": 0.00001}, "max_cost_usd"),
    ],
)
def test_simulate__cap_hit__record_budget_blocked_with_the_caps_name(
    limits: dict[str, Any], cap: str
) -> None:
    records = run_requests(
        snapshot_for(AGENT, bundle_with_limits(**limits)), AGENT, count=40, seed=4
    )

    capped = [r for r in records if r.outcome == "budget_blocked"]
    assert capped
    assert {r.error_code for r in capped} == {f"cap:{cap}"}
    api = usage_record(capped[0])
    assert (api.outcome, api.error_code) == ("budget_blocked", f"cap:{cap}")
    assert all(r.outcome != "blocked" for r in records)


# -- the looping bundle and the simulator ------------------------------------------------------


def test_traits__search_until_certain__the_lookup_loop() -> None:
    assert Traits.of(bundle_with_limits(SEARCHING.upper())).search_loop
    assert not Traits.of(GOOD_SUPPORT_BOT).search_loop


def test_simulate__looping_bundle__80_to_100_lookups_a_request() -> None:
    bundle = bundle_with_limits(SEARCHING, max_steps=1000)
    records = run_requests(snapshot_for(AGENT, bundle), AGENT, count=10, seed=1)

    assert all(r.tools_called.count("lookup_order") >= 80 for r in records)
    assert all(r.tools_called.count("lookup_order") <= 100 * 3 for r in records)
    assert all(r.cost_usd > Decimal("0.01") for r in records)


def test_simulate__looping_bundle_capped_at_20_tool_calls__cut_at_the_cap() -> None:
    bundle = bundle_with_limits(SEARCHING, max_steps=1000, max_tool_calls=20)
    records = run_requests(snapshot_for(AGENT, bundle), AGENT, count=10, seed=1)

    assert {r.tool_calls for r in records} == {20}
    assert {r.outcome for r in records} == {"budget_blocked"}
    assert {r.error_code for r in records} == {"cap:max_tool_calls"}
    assert all(r.cost_usd > 0 for r in records)  # what was spent until the cut


def test_simulate__block_budget_exhausted__every_request_blocked_at_zero_cost() -> None:
    snapshot = snapshot_for(AGENT, GOOD_SUPPORT_BOT, budgets=[budget()])

    records = run_requests(snapshot, AGENT, count=20, seed=2, clock=lambda: NOW)

    assert {r.outcome for r in records} == {"budget_blocked"}
    assert {r.error_code for r in records} == {"budget:12"}
    assert {r.cost_usd for r in records} == {Decimal(0)}
    assert usage_record(records[0]).outcome == "budget_blocked"


def test_simulate__model_degrade__served_at_the_cheaper_models_price() -> None:
    expensive = copy.deepcopy(GOOD_SUPPORT_BOT)
    expensive["model"]["name"] = "gpt-4o"
    degrade = {"mode": "model", "model": "gpt-4o-mini"}
    plain = run_requests(snapshot_for(AGENT, expensive), AGENT, count=30, seed=3)
    degraded = run_requests(
        snapshot_for(AGENT, expensive, budgets=[budget(action="degrade", degrade=degrade)]),
        AGENT,
        count=30,
        seed=3,
        clock=lambda: NOW,
    )

    assert sum(r.cost_usd for r in degraded) < sum(r.cost_usd for r in plain) / 5
    assert [r.outcome for r in degraded] == [r.outcome for r in plain]


def test_simulate__budget_resets__same_records_as_without_budgets() -> None:
    bundle = bundle_with_limits(SEARCHING, max_steps=1000, max_tool_calls=30)
    plain = run_requests(snapshot_for(AGENT, bundle), AGENT, count=10, seed=9)
    after_reset = run_requests(
        snapshot_for(AGENT, bundle, budgets=[budget()]),
        AGENT,
        count=10,
        seed=9,
        clock=lambda: RESETS_AT + timedelta(seconds=1),
    )

    assert [r.as_json() for r in after_reset] == [r.as_json() for r in plain]


# -- reservations against the fake control plane -----------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runtime(control_plane: FakeControlPlane, clock: Clock) -> Iterator[Runtime]:
    instance = Runtime(control_plane.url, TOKEN, "budget-runtime", clock=clock)
    yield instance
    instance.stop()


def strict_setup(
    plane: FakeControlPlane,
    runtime: Runtime,
    *,
    limits: dict[str, Any],
    strict: bool = True,
    bundle: dict[str, Any] | None = None,
) -> None:
    snapshot_budget = budget(state="ok", strict=strict, limits=limits)
    plane.strict_budgets = (
        [
            {
                "id": 12,
                "name": "support-bot hourly",
                "scope": "agent",
                "agent": AGENT,
                "limits": limits,
                "consumed": {},
            }
        ]
        if strict
        else []
    )
    plane.publish(snapshot_content(1, bundle=bundle, budgets=[snapshot_budget]))
    runtime.sync_once()
    assert runtime.status().revision == 1


def reserve(runtime: Runtime, reservation_id: str, **estimate: Any) -> Any:
    return runtime.budget_reserve(
        reservation_id=reservation_id,
        request_id="req-81f2",
        agent=AGENT,
        end_user_hash=ALICE,
        estimate=estimate,
    )


def test_reserve__strict_budget_with_room__granted_then_refused_at_the_limit(
    control_plane: FakeControlPlane, runtime: Runtime
) -> None:
    strict_setup(control_plane, runtime, limits={"tool_calls": 2, "cost_usd": "5.00"})

    first = reserve(runtime, "req-81f2:1", tool_calls=1, cost_usd=Decimal("0.40"))
    second = reserve(runtime, "req-81f2:2", tool_calls=1)
    third = reserve(runtime, "req-81f2:3", tool_calls=1)

    assert (first.granted, first.source) == (True, "control-plane")
    assert first.remaining[12]["tool_calls"] == "1"
    assert second.granted
    assert (third.granted, third.error_code) == (False, "budget:12")
    assert third.refused_by is not None
    assert (third.refused_by.metric, third.refused_by.remaining) == ("tool_calls", "0")
    # the documented body: decimals as strings, the end user, the request
    assert control_plane.reserve_calls[0] == {
        "reservation_id": "req-81f2:1",
        "request_id": "req-81f2",
        "agent": AGENT,
        "end_user_hash": ALICE,
        "estimate": {"tool_calls": 1, "cost_usd": "0.40"},
    }


def test_settle__granted_reservation__settled_once(
    control_plane: FakeControlPlane, runtime: Runtime
) -> None:
    strict_setup(control_plane, runtime, limits={"tool_calls": 5})
    reserve(runtime, "req-81f2:1", tool_calls=1)

    settled = runtime.budget_settle(
        reservation_id="req-81f2:1", actual={"tool_calls": 1, "cost_usd": Decimal("0.38")}
    )
    again = runtime.budget_settle(reservation_id="req-81f2:1", actual={"tool_calls": 1})

    assert (settled.status, settled.duplicate) == ("settled", False)
    assert again.status == "local"  # already settled: nothing sent
    assert control_plane.settle_calls == [
        {"reservation_id": "req-81f2:1", "actual": {"tool_calls": 1, "cost_usd": "0.38"}}
    ]


def test_reserve__no_strict_budget_in_scope__granted_without_a_call(
    control_plane: FakeControlPlane, runtime: Runtime
) -> None:
    strict_setup(control_plane, runtime, limits={"tool_calls": 0}, strict=False)

    result = reserve(runtime, "req-81f2:1", tool_calls=1)
    settled = runtime.budget_settle(reservation_id="req-81f2:1", actual={"tool_calls": 1})

    assert (result.granted, result.source) == (True, "local")
    assert settled.status == "local"
    assert control_plane.reserve_calls == control_plane.settle_calls == []


def test_reserve__malformed_reservation_id__value_error(
    control_plane: FakeControlPlane, runtime: Runtime
) -> None:
    strict_setup(control_plane, runtime, limits={"tool_calls": 5})

    with pytest.raises(ValueError, match="reservation_id"):
        reserve(runtime, "has spaces", tool_calls=1)
    with pytest.raises(ValueError, match=r"estimate\.tool_calls"):
        reserve(runtime, "ok", tool_calls=-1)


def test_unreachable_within_grace__strict_budget_open(
    control_plane: FakeControlPlane, runtime: Runtime, clock: Clock
) -> None:
    strict_setup(control_plane, runtime, limits={"tool_calls": 5})
    control_plane.set_unavailable(True)
    runtime.sync_once()  # the failure that starts the clock
    clock.now += timedelta(seconds=59)

    result = reserve(runtime, "req-1:1", tool_calls=1)
    guard = runtime.guard(AGENT, "s-1", RequestContext(end_user_hash=ALICE))

    assert (result.granted, result.source) == (True, "offline")
    assert guard.check_step().allowed


def test_unreachable_past_grace__strict_budget_fails_closed(
    control_plane: FakeControlPlane, runtime: Runtime, clock: Clock
) -> None:
    strict_setup(control_plane, runtime, limits={"tool_calls": 5})
    control_plane.set_unavailable(True)
    runtime.sync_once()
    clock.now += timedelta(seconds=61)

    result = reserve(runtime, "req-1:1", tool_calls=1)
    guard = runtime.guard(AGENT, "s-1", RequestContext(end_user_hash=ALICE))
    decision = guard.check_step()

    assert (result.granted, result.error_code) == (False, "budget:12:unreachable")
    assert (decision.outcome, decision.error_code) == ("budget_blocked", "budget:12:unreachable")
    # back: the next successful sync reopens
    control_plane.set_unavailable(False)
    runtime.sync_once()
    assert runtime.guard(AGENT, "s-2").check_step().allowed


def test_unreachable_past_grace__failed_reservations_alone_start_the_clock(
    control_plane: FakeControlPlane, runtime: Runtime, clock: Clock
) -> None:
    strict_setup(control_plane, runtime, limits={"tool_calls": 5})
    control_plane.set_unavailable(True)

    assert reserve(runtime, "req-1:1", tool_calls=1).granted
    clock.now += timedelta(seconds=61)

    assert reserve(runtime, "req-1:2", tool_calls=1).error_code == "budget:12:unreachable"


def test_unreachable_past_grace__soft_budget_stays_open(
    control_plane: FakeControlPlane, runtime: Runtime, clock: Clock
) -> None:
    strict_setup(control_plane, runtime, limits={"tool_calls": 5}, strict=False)
    control_plane.set_unavailable(True)
    runtime.sync_once()
    clock.now += timedelta(hours=2)

    assert reserve(runtime, "req-1:1", tool_calls=1).granted
    assert runtime.guard(AGENT, "s-1").check_step().allowed


def test_settle__control_plane_down__pending_then_retried(
    control_plane: FakeControlPlane, runtime: Runtime
) -> None:
    strict_setup(control_plane, runtime, limits={"tool_calls": 5})
    reserve(runtime, "req-1:1", tool_calls=1)
    control_plane.set_unavailable(True)

    pending = runtime.budget_settle(reservation_id="req-1:1", actual={"tool_calls": 1})

    assert pending.status == "pending"
    assert runtime.retry_settles() == 1
    control_plane.set_unavailable(False)
    assert runtime.retry_settles() == 0
    assert control_plane.reservations["req-1:1"]["status"] == "settled"


def test_settle__unreachable_host__never_raises(clock: Clock) -> None:
    runtime = Runtime("http://127.0.0.1:9", TOKEN, "nowhere", clock=clock)
    runtime._remote_reservations["r-1"] = None  # as if the control plane had granted it

    result = runtime.budget_settle(reservation_id="r-1", actual={"tool_calls": 1})

    assert result.status == "pending"


def test_simulate__strict_budget__reserves_each_step_and_stops_when_refused(
    control_plane: FakeControlPlane, runtime: Runtime
) -> None:
    bundle = bundle_with_limits(SEARCHING, max_steps=1000)
    strict_setup(control_plane, runtime, limits={"tool_calls": 5}, bundle=bundle)
    request = synthetic_request(random.Random("strict"), "req-9")

    record = FakeAgent(AGENT).handle(request, runtime.guard(AGENT, request.session_id))

    assert (record.outcome, record.error_code) == ("budget_blocked", "budget:12")
    assert record.tool_calls == 5
    ids = [call["reservation_id"] for call in control_plane.reserve_calls]
    # a budget of tool calls only: the model steps' reservations (1, 3, 5...) hold nothing it
    # limits and are granted locally, the tool calls' (2, 4, 6...) go to the control plane
    assert ids[:3] == ["req-9:2", "req-9:4", "req-9:6"]
    assert {call["request_id"] for call in control_plane.reserve_calls} == {"req-9"}
    assert all(c["estimate"] == {"tool_calls": 1} for c in control_plane.reserve_calls)
    granted = [i for i, call in control_plane.reservations.items()]
    assert {call["reservation_id"] for call in control_plane.settle_calls} == set(granted)
