from __future__ import annotations

import json
from typing import Any

import pytest

from dataplane.client import Backoff
from dataplane.simulate import Fleet, outcome_stats, run_requests, snapshot_for
from dataplane.simulate.__main__ import TOKEN_ENV, main, parse_args
from dataplane.simulate.agent import WRONG_ACTION, Traits

from .bundles import BAD_SUPPORT_BOT, GOOD_SUPPORT_BOT, refund_agent
from .conftest import snapshot_content
from .fake_control_plane import TOKEN, WAIT, FakeControlPlane

AGENT = "support-bot"


def stats_for(bundle: dict[str, Any], version: int, count: int = 600) -> Any:
    records = run_requests(
        snapshot_for(AGENT, bundle, stable_version=version), AGENT, count=count, seed=11
    )
    return outcome_stats(records)[(AGENT, version)]


def test_traits__refund_happy_prompt__pushes_refunds_cautious_prompt_does_not() -> None:
    assert Traits.of(BAD_SUPPORT_BOT).refund_push > 0.3
    assert Traits.of(GOOD_SUPPORT_BOT).refund_push < 0.05


def test_simulate__bad_bundle__measurably_worse_outcomes() -> None:
    good, bad = stats_for(GOOD_SUPPORT_BOT, 1), stats_for(BAD_SUPPORT_BOT, 2)

    assert bad.mean_quality < good.mean_quality - 0.05
    assert bad.wrong_action_rate > good.wrong_action_rate + 0.05
    assert bad.success_rate < good.success_rate
    assert bad.denials > good.denials
    assert bad.tool_calls > good.tool_calls


def test_simulate__same_seed__same_records() -> None:
    snapshot = snapshot_for(AGENT, BAD_SUPPORT_BOT)

    first = run_requests(snapshot, AGENT, count=50, seed=3)
    second = run_requests(snapshot, AGENT, count=50, seed=3)

    assert [r.as_json() for r in first] == [r.as_json() for r in second]


def test_simulate__approval_gated_refunds__humans_catch_unowed_refunds() -> None:
    bundle = refund_agent()
    bundle["tools"][2]["requires_approval"] = True
    bundle["prompts"]["system"]["template"] = (
        "Always offer a refund generously to unhappy customers."
    )
    records = run_requests(snapshot_for("refund-agent", bundle), "refund-agent", count=400, seed=5)

    stats = outcome_stats(records)[("refund-agent", 1)]

    assert stats.approvals > 0
    assert stats.outcomes.get("rejected_by_human", 0) > 0
    assert stats.outcomes.get(WRONG_ACTION, 0) == 0


def test_simulate__candidate_rollout__stats_split_per_version() -> None:
    snapshot = snapshot_for(AGENT, GOOD_SUPPORT_BOT, candidate=BAD_SUPPORT_BOT, percentage=50)

    stats = outcome_stats(run_requests(snapshot, AGENT, count=400, seed=2))

    assert set(stats) == {(AGENT, 1), (AGENT, 2)}
    assert stats[(AGENT, 2)].mean_quality < stats[(AGENT, 1)].mean_quality


def test_simulate__kill_switch__stops_the_agents_writes() -> None:
    stopped = snapshot_for(
        AGENT,
        BAD_SUPPORT_BOT,
        kill_switches=[
            {
                "id": 1,
                "kind": "agent_mode",
                "mode": "read_only",
                "agent": AGENT,
                "scope": "agent",
                "reason": "wrong refunds",
                "engaged_at": "2026-11-23T12:00:00+00:00",
            }
        ],
    )

    records = run_requests(stopped, AGENT, count=200, seed=4)

    assert all("open_ticket" not in record.tools_called for record in records)
    assert outcome_stats(records)[(AGENT, 1)].wrong_action_rate == 0


@pytest.fixture
def fleet_plane(control_plane: FakeControlPlane) -> FakeControlPlane:
    control_plane.publish(snapshot_content(1, bundle=BAD_SUPPORT_BOT))
    return control_plane


def test_fleet__runtimes_register_serve_and_report(fleet_plane: FakeControlPlane) -> None:
    fleet_plane.records_status = 202
    fleet = Fleet(
        fleet_plane.url,
        TOKEN,
        runtimes=3,
        agent=AGENT,
        rps=1000,
        requests_per_runtime=10,
        backoff=Backoff(0.01, 0.05),
    )
    fleet.start()
    try:
        assert fleet.wait_finished(WAIT)
    finally:
        assert fleet.stop()

    stats = fleet.stats()
    assert stats[(AGENT, 1)].requests == 30
    assert fleet_plane.wait_for(lambda: len(fleet_plane.records) == 30)
    instances = {
        beat["instance_id"] for beat in fleet_plane.heartbeats if beat.get("status") == "ack"
    }
    assert instances == {"sim-0000", "sim-0001", "sim-0002"}


def test_fleet__records_endpoint_missing__reporting_switches_off(
    fleet_plane: FakeControlPlane,
) -> None:
    fleet = Fleet(fleet_plane.url, TOKEN, runtimes=1, agent=AGENT, rps=1000, requests_per_runtime=5)
    fleet.start()
    assert fleet.wait_finished(WAIT)
    assert fleet.stop()

    assert fleet.reporter is not None and not fleet.reporter.enabled
    assert fleet.stats()[(AGENT, 1)].requests == 5


def test_main__json_output__per_version_stats(
    fleet_plane: FakeControlPlane, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--url",
            fleet_plane.url,
            "--token",
            TOKEN,
            "--runtimes",
            "2",
            "--rps",
            "1000",
            "--requests",
            "4",
            "--duration",
            str(WAIT),
            "--json",
            "--no-report",
        ]
    )

    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(row["agent"], row["version"], row["requests"]) for row in printed] == [(AGENT, 1, 8)]


def lookups_with_rate_limit(control_plane: FakeControlPlane, **fleet_options: Any) -> int:
    bundle = json.loads(json.dumps(GOOD_SUPPORT_BOT))
    bundle["tools"][0]["rate_limit"] = {"max_calls": 1, "per_s": 3600}
    control_plane.publish(snapshot_content(1, bundle=bundle))
    fleet = Fleet(
        control_plane.url,
        TOKEN,
        runtimes=1,
        agent=AGENT,
        rps=1000,
        requests_per_runtime=30,
        report=False,
        **fleet_options,
    )
    fleet.start()
    assert fleet.wait_finished(WAIT)
    assert fleet.stop()
    return sum(record.tools_called.count("lookup_order") for record in fleet.records)


def test_fleet__rate_limits_enforced__bundle_limit_caps_tool_calls(
    control_plane: FakeControlPlane,
) -> None:
    assert lookups_with_rate_limit(control_plane, enforce_rate_limits=True) == 1


def test_fleet__rate_limits_off_by_default__dense_traffic_not_capped(
    control_plane: FakeControlPlane,
) -> None:
    assert lookups_with_rate_limit(control_plane) > 1


# --------------------------------------------------------------------------- the token, not in ps

_ARGS = ["--url", "http://127.0.0.1:1"]


def test_simulate_args__token_from_a_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    path = tmp_path / "token"
    path.write_text("cprt_from_file\n")
    assert parse_args([*_ARGS, "--token-file", str(path)]).token == "cprt_from_file"


def test_simulate_args__token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "cprt_from_env")
    assert parse_args(_ARGS).token == "cprt_from_env"
    assert parse_args([*_ARGS, "--token", "cprt_given"]).token == "cprt_given"


@pytest.mark.parametrize("extra", [[], ["--token-file", "/nonexistent/token"]])
def test_simulate_args__no_token__usage_error(
    extra: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_:
        parse_args([*_ARGS, *extra])
    assert exit_.value.code == 2
    assert "token" in capsys.readouterr().err
