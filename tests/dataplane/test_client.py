from __future__ import annotations

import base64
import http.client
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dataplane.client import Backoff, Runtime
from dataplane.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, push_key, sign_push

from .conftest import snapshot_content
from .fake_control_plane import TOKEN, WAIT, FakeControlPlane, public_b64, sign_envelope

FAST = Backoff(base_s=0.01, cap_s=0.05)
KILL_REFUNDS = {
    "id": 7,
    "kind": "tool_disabled",
    "tool_pattern": "open_*",
    "agent": None,
    "scope": "tenant",
    "reason": "wrong refunds",
    "engaged_at": "2026-11-23T12:00:00+00:00",
}


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    started: list[Runtime] = []
    yield started
    for runtime in started:
        runtime.stop()


def make_runtime(plane_url: str, runtimes: list[Runtime], **kwargs: Any) -> Runtime:
    options: dict[str, Any] = {"backoff": FAST, "heartbeat_interval_s": 60, "request_timeout_s": 5}
    runtime = Runtime(
        plane_url, TOKEN, "rt-1", name="pod 3", labels={"region": "eu"}, **{**options, **kwargs}
    )
    runtimes.append(runtime)
    return runtime


def acked(revision: int) -> Any:
    return lambda beat: beat.get("status") == "ack" and beat.get("revision") == revision


def nacked(revision: int) -> Any:
    return lambda beat: beat.get("status") == "nack" and beat.get("revision") == revision


# -- the happy path --------------------------------------------------------------------------


def test_start__registers_applies_and_acks_with_digests(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes)

    runtime.start()

    beat = control_plane.wait_for_heartbeat(acked(1))
    assert runtime.snapshot is not None and runtime.snapshot.revision == 1
    assert runtime.source == "control-plane"
    assert (
        beat["instance_id"] == "rt-1"
        and beat["name"] == "pod 3"
        and beat["labels"] == {"region": "eu"}
    )
    assert beat["digests"] == {"support-bot": runtime.snapshot.agents["support-bot"].stable.digest}


def test_long_poll__new_revision__applied_and_acked(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes)
    runtime.start()
    assert control_plane.wait_for(lambda: control_plane.parked_long_polls == 1)

    control_plane.publish(snapshot_content(2, kill_switches=[KILL_REFUNDS]))

    assert runtime.wait_for_revision(2, WAIT)
    control_plane.wait_for_heartbeat(acked(2))
    assert [switch.id for switch in runtime.snapshot.kill_switches] == [7]


def test_heartbeat__periodic__reports_circuit_breaker_states(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes, heartbeat_interval_s=0.01)
    runtime.start()
    control_plane.wait_for_heartbeat(acked(1))

    for _ in range(5):
        runtime.breakers.get("search_orders").record_failure()

    beat = control_plane.wait_for_heartbeat(
        lambda b: b.get("circuit_breakers", {}).get("search_orders", {}).get("state") == "open"
    )
    assert beat["circuit_breakers"]["search_orders"]["failures"] == 5
    assert beat["status"] == "ack" and beat["revision"] == 1


def test_snapshot__swapped_whole__old_reference_stays_consistent(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes)
    runtime.start()
    held = runtime.snapshot

    control_plane.publish(snapshot_content(2, kill_switches=[KILL_REFUNDS]))
    assert runtime.wait_for_revision(2, WAIT)

    assert held is not None and held.revision == 1 and held.kill_switches == ()
    assert runtime.snapshot is not held


# -- verification failures -------------------------------------------------------------------


def tampered_content(envelope: dict[str, Any]) -> dict[str, Any]:
    # The attack that matters: strip an engaged kill switch from a signed snapshot.
    assert envelope["snapshot"]["kill_switches"]
    envelope["snapshot"]["kill_switches"] = []
    return envelope


def wrong_key(envelope: dict[str, Any]) -> dict[str, Any]:
    return sign_envelope(
        envelope["snapshot"], Ed25519PrivateKey.generate(), envelope["signature"]["kid"]
    )


def unknown_kid(envelope: dict[str, Any]) -> dict[str, Any]:
    return sign_envelope(envelope["snapshot"], Ed25519PrivateKey.generate(), "kid-nobody-published")


def flipped_signature(envelope: dict[str, Any]) -> dict[str, Any]:
    raw = bytearray(base64.b64decode(envelope["signature"]["value"]))
    raw[0] ^= 1
    envelope["signature"]["value"] = base64.b64encode(bytes(raw)).decode()
    return envelope


def unsigned(envelope: dict[str, Any]) -> dict[str, Any]:
    del envelope["signature"]
    return envelope


def wrong_bundle_digest(
    envelope: dict[str, Any], key: Ed25519PrivateKey, kid: str
) -> dict[str, Any]:
    envelope["snapshot"]["agents"]["support-bot"]["stable"]["digest"] = "0" * 64
    return sign_envelope(envelope["snapshot"], key, kid)


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        (tampered_content, "digest mismatch"),
        (wrong_key, "bad signature"),
        (unknown_kid, "unknown signing key"),
        (flipped_signature, "bad signature"),
        (unsigned, "not signed"),
    ],
    ids=[
        "content changed",
        "signed by another key",
        "unknown key id",
        "signature bit flipped",
        "unsigned",
    ],
)
def test_tampered_snapshot__nacked_and_previous_kept(
    control_plane: FakeControlPlane, runtimes: list[Runtime], tamper: Any, error: str
) -> None:
    control_plane.publish(snapshot_content(1, kill_switches=[KILL_REFUNDS]))
    runtime = make_runtime(control_plane.url, runtimes)
    runtime.start()
    control_plane.wait_for_heartbeat(acked(1))

    revision_2 = snapshot_content(2, kill_switches=[{**KILL_REFUNDS, "id": 8}])
    control_plane.publish_envelope(
        tamper(sign_envelope(revision_2, control_plane.key, control_plane.kid)), 2
    )

    beat = control_plane.wait_for_heartbeat(nacked(2))
    assert error in beat["error"]
    assert runtime.snapshot is not None and runtime.snapshot.revision == 1
    assert [switch.id for switch in runtime.snapshot.kill_switches] == [7]
    assert runtime.status().rejected_revision == 2
    assert error in runtime.status().rejection


def test_wrong_bundle_digest__nacked(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes)
    runtime.start()

    envelope = sign_envelope(snapshot_content(2), control_plane.key, control_plane.kid)
    control_plane.publish_envelope(
        wrong_bundle_digest(envelope, control_plane.key, control_plane.kid), 2
    )

    assert "bundle digest mismatch" in control_plane.wait_for_heartbeat(nacked(2))["error"]
    assert runtime.snapshot.revision == 1


def test_garbage_body__nacked_with_the_control_planes_revision(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes)
    runtime.start()
    control_plane.wait_for_heartbeat(acked(1))

    with control_plane.cond:
        control_plane.body, control_plane.etag, control_plane.revision = b"<html>", '"broken"', 2
        control_plane.cond.notify_all()

    assert "not JSON" in control_plane.wait_for_heartbeat(nacked(2))["error"]
    assert runtime.snapshot.revision == 1


def test_older_revision_replayed__nacked_and_kill_switch_kept(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    old = control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes)
    runtime.start()
    control_plane.publish(snapshot_content(2, kill_switches=[KILL_REFUNDS]))
    assert runtime.wait_for_revision(2, WAIT)

    control_plane.publish_envelope(old, 1)

    assert (
        "older than the served revision 2" in control_plane.wait_for_heartbeat(nacked(1))["error"]
    )
    assert [switch.id for switch in runtime.snapshot.kill_switches] == [7]


def test_rejected_revision__not_refetched_until_the_next_one(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes)
    runtime.start()
    control_plane.wait_for_heartbeat(acked(1))
    revision_2 = snapshot_content(2, kill_switches=[KILL_REFUNDS])
    control_plane.publish_envelope(
        tampered_content(sign_envelope(revision_2, control_plane.key, control_plane.kid)), 2
    )
    control_plane.wait_for_heartbeat(nacked(2))

    # The runtime parks a long-poll on the rejected ETag instead of fetching it again: the
    # initial fetch, the long-poll that brought revision 2, and this one.
    assert control_plane.wait_for(lambda: control_plane.parked_long_polls == 1)
    assert control_plane.config_requests == 3
    control_plane.publish(snapshot_content(3))

    assert runtime.wait_for_revision(3, WAIT)
    control_plane.wait_for_heartbeat(acked(3))


def test_snapshot_for_another_environment__nacked(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes)
    runtime.start()

    control_plane.publish(snapshot_content(2, tenant="globex"))

    assert (
        "snapshot is for globex/production" in control_plane.wait_for_heartbeat(nacked(2))["error"]
    )
    assert runtime.snapshot.tenant == "acme"


def test_on_change__callback_raises__sync_goes_on(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    called = {revision: threading.Event() for revision in (1, 2, 3)}

    def on_change(previous: Any, current: Any) -> None:
        called[current.revision].set()
        raise RuntimeError("the application's bug")

    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes, on_change=on_change)
    runtime.start()
    control_plane.publish(snapshot_content(2))
    assert called[2].wait(WAIT)

    control_plane.publish(snapshot_content(3))

    assert called[3].wait(WAIT)
    assert called[1].is_set()
    control_plane.wait_for_heartbeat(acked(3))


def test_sync_once__without_threads__applies_and_acks(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(4))
    runtime = make_runtime(control_plane.url, runtimes)

    runtime.sync_once()

    assert runtime.snapshot.revision == 4
    assert (
        control_plane.heartbeats[-1]["status"] == "ack"
        and control_plane.heartbeats[-1]["revision"] == 4
    )


# -- fail-static -----------------------------------------------------------------------------


def test_control_plane_stopped__keeps_serving_and_backs_off(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1, kill_switches=[KILL_REFUNDS]))
    runtime = make_runtime(control_plane.url, runtimes)
    runtime.start()
    control_plane.wait_for_heartbeat(acked(1))

    control_plane.stop()

    assert runtime.wait_for(lambda status: status.consecutive_failures >= 3, WAIT)
    assert runtime.snapshot is not None and runtime.snapshot.revision == 1
    guard = runtime.guard("support-bot", "s-1")
    assert guard.check_tool_call("open_ticket", {"team": "refunds", "summary": "x"}).denied


def test_control_plane_back__runtime_resyncs(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes)
    runtime.start()
    control_plane.set_unavailable(True)
    assert runtime.wait_for(lambda status: status.consecutive_failures >= 2, WAIT)

    control_plane.set_unavailable(False)
    control_plane.publish(snapshot_content(2))

    assert runtime.wait_for_revision(2, WAIT)
    assert runtime.wait_for(lambda status: status.consecutive_failures == 0, WAIT)


def test_restart_with_control_plane_down__serves_the_disk_cache(
    control_plane: FakeControlPlane, runtimes: list[Runtime], tmp_path: Path
) -> None:
    control_plane.publish(snapshot_content(5, kill_switches=[KILL_REFUNDS]))
    first = make_runtime(control_plane.url, runtimes, cache_dir=tmp_path)
    first.start()
    control_plane.wait_for_heartbeat(acked(5))
    assert first.stop()
    control_plane.stop()

    restarted = make_runtime(control_plane.url, runtimes, cache_dir=tmp_path)
    restarted.start()

    assert restarted.snapshot is not None and restarted.snapshot.revision == 5
    assert restarted.source == "disk-cache"
    guard = restarted.guard("support-bot", "s-1")
    assert (
        guard.check_tool_call("open_ticket", {"team": "refunds", "summary": "x"}).check
        == "kill_switch"
    )
    assert guard.check_tool_call("lookup_order", {"order_id": "A12345678"}).allowed
    assert restarted.wait_for(lambda status: status.consecutive_failures >= 1, WAIT)


def test_restart__corrupt_cache__ignored_and_serves_nothing(
    control_plane: FakeControlPlane, runtimes: list[Runtime], tmp_path: Path
) -> None:
    control_plane.publish(snapshot_content(5))
    first = make_runtime(control_plane.url, runtimes, cache_dir=tmp_path)
    first.start()
    first.stop()
    control_plane.stop()
    cache = tmp_path / "last-known-good.json"
    data = json.loads(cache.read_text())
    data["envelope"]["snapshot"]["kill_switches"] = []  # edited on disk
    data["envelope"]["snapshot"]["revision"] = 6
    cache.write_text(json.dumps(data))

    restarted = make_runtime(control_plane.url, runtimes, cache_dir=tmp_path)
    restarted.start()

    assert restarted.snapshot is None
    assert (
        restarted.guard("support-bot", "s-1")
        .check_tool_call("lookup_order", {"order_id": "A12345678"})
        .denied
    )


def test_cache__written_atomically_with_the_verified_envelope(
    control_plane: FakeControlPlane, runtimes: list[Runtime], tmp_path: Path
) -> None:
    envelope = control_plane.publish(snapshot_content(3))
    runtime = make_runtime(control_plane.url, runtimes, cache_dir=tmp_path)

    runtime.start()

    saved = json.loads((tmp_path / "last-known-good.json").read_text())
    assert saved["envelope"] == envelope
    assert saved["keys"] == {control_plane.kid: public_b64(control_plane.key)}
    assert [path.name for path in tmp_path.iterdir()] == ["last-known-good.json"]


def test_restart_with_control_plane_up__fresh_snapshot_replaces_the_cache(
    control_plane: FakeControlPlane, runtimes: list[Runtime], tmp_path: Path
) -> None:
    control_plane.publish(snapshot_content(1, kill_switches=[KILL_REFUNDS]))
    first = make_runtime(control_plane.url, runtimes, cache_dir=tmp_path)
    first.start()
    first.stop()
    control_plane.publish(snapshot_content(2))

    restarted = make_runtime(control_plane.url, runtimes, cache_dir=tmp_path)
    restarted.start()

    assert restarted.snapshot.revision == 2 and restarted.source == "control-plane"
    assert restarted.snapshot.kill_switches == ()


def test_pinned_keys__snapshot_signed_by_an_unpinned_key__nacked(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    other = Ed25519PrivateKey.generate()
    pinned = {"pinned-kid": base64.b64encode(other.public_key().public_bytes_raw()).decode()}
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes, trusted_keys=pinned)

    runtime.start()

    assert "unknown signing key" in control_plane.wait_for_heartbeat(nacked(1))["error"]
    assert runtime.snapshot is None


# -- push and stop ---------------------------------------------------------------------------


def test_push__cuts_a_stuck_long_poll_short_and_fetches(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.wake_long_polls = False  # a lost wake-up: only the push can bring revision 2
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes, wait_s=60)
    runtime.start()
    url = runtime.serve_push()
    control_plane.wait_for_heartbeat(lambda beat: beat.get("push_url") == url)
    assert control_plane.wait_for(lambda: control_plane.parked_long_polls == 1)
    control_plane.publish(snapshot_content(2))

    body = json.dumps({"tenant": "acme", "environment": "production", "revision": 2}).encode()
    timestamp = int(time.time())
    connection = http.client.HTTPConnection(url.split("//")[1].split("/")[0], timeout=WAIT)
    connection.request(
        "POST",
        "/push",
        body=body,
        headers={
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign_push(key=push_key(TOKEN), timestamp=timestamp, body=body),
        },
    )
    assert connection.getresponse().status == 204
    connection.close()

    assert runtime.wait_for_revision(2, WAIT)


def test_lost_wake_up__heartbeats_notice_the_control_plane_is_ahead(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.wake_long_polls = False  # the long-poll will not bring revision 2
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes, wait_s=60, heartbeat_interval_s=0.01)
    runtime.start()
    assert control_plane.wait_for(lambda: control_plane.parked_long_polls == 1)

    control_plane.publish(snapshot_content(2))

    assert runtime.wait_for_revision(2, WAIT)


def test_stop__during_a_long_poll__threads_end(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.publish(snapshot_content(1))
    runtime = make_runtime(control_plane.url, runtimes, wait_s=60)
    runtime.start()
    assert control_plane.wait_for(lambda: control_plane.parked_long_polls == 1)

    # The long-poll would hold for 60 s; stop() must not wait for it.
    assert runtime.stop(timeout=WAIT)


def test_stop__while_backing_off__threads_end(
    control_plane: FakeControlPlane, runtimes: list[Runtime]
) -> None:
    control_plane.stop()
    runtime = make_runtime(control_plane.url, runtimes, backoff=Backoff(base_s=60, cap_s=60))
    runtime.start()
    assert runtime.wait_for(lambda status: status.consecutive_failures >= 1, WAIT)

    assert runtime.stop(timeout=WAIT)


@pytest.mark.parametrize(
    ("failures", "low", "high"), [(1, 0.25, 0.5), (2, 0.5, 1.0), (4, 2.0, 4.0), (30, 5.0, 10.0)]
)
def test_backoff__exponential_with_jitter_and_capped(
    failures: int, low: float, high: float
) -> None:
    backoff = Backoff(base_s=0.5, cap_s=10)
    rng = random.Random(failures)

    delays = [backoff.delay(failures, rng) for _ in range(200)]

    assert all(low <= delay <= high for delay in delays)
    assert len(set(delays)) > 100  # jittered, not one value for the whole fleet


def test_wait_s__outside_the_servers_limit__refused() -> None:
    with pytest.raises(ValueError):
        Runtime("http://127.0.0.1:1", TOKEN, "rt", wait_s=61)
