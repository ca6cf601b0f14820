"""The reference runtime reports the agents it serves in its heartbeat (``agents``, and the
digests of those agents only), so the control plane counts it for them alone."""

from __future__ import annotations

import copy
from typing import Any

from dataplane.client import Runtime

from .conftest import snapshot_content
from .fake_control_plane import FakeControlPlane
from .test_client import acked, make_runtime, runtimes  # noqa: F401  (the fixture)


def _two_agents(revision: int) -> dict[str, Any]:
    content = snapshot_content(revision)
    content["agents"]["refund-agent"] = copy.deepcopy(content["agents"]["support-bot"])
    return content


def test_heartbeat__agents_given__reports_them_and_only_their_digests(
    control_plane: FakeControlPlane,
    runtimes: list[Runtime],  # noqa: F811
) -> None:
    control_plane.publish(_two_agents(1))
    runtime = make_runtime(control_plane.url, runtimes, agents=["refund-agent"])

    runtime.start()

    beat = control_plane.wait_for_heartbeat(acked(1))
    assert beat["agents"] == ["refund-agent"]
    assert set(beat["digests"]) == {"refund-agent"}


def test_heartbeat__no_agents_given__reports_every_agent_of_its_snapshot(
    control_plane: FakeControlPlane,
    runtimes: list[Runtime],  # noqa: F811
) -> None:
    control_plane.publish(_two_agents(1))
    runtime = make_runtime(control_plane.url, runtimes)

    runtime.start()

    beat = control_plane.wait_for_heartbeat(acked(1))
    assert beat["agents"] == ["refund-agent", "support-bot"]
    assert set(beat["digests"]) == {"refund-agent", "support-bot"}


def test_heartbeat_payload__before_any_snapshot__no_agent_claimed(
    control_plane: FakeControlPlane,
) -> None:
    runtime = Runtime(control_plane.url, "token", "rt-9")

    payload = runtime.heartbeat_payload()

    assert (payload["agents"], payload["digests"]) == ([], {})
    assert Runtime(control_plane.url, "t", "rt-8", agents=["a"]).heartbeat_payload()["agents"] == [
        "a"
    ]
