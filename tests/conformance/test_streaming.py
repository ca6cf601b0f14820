"""``GET /api/client/streaming`` emits the delta events of Unleash's client specification:
``unleash-connected`` with a hydration event shaped like file 19, then ``unleash-updated``
with feature-updated / feature-removed / segment-updated events shaped like file 20 (and
segment-removed, which file 20 does not show)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apps.flags import services
from apps.tenancy.models import Tenant

from ..flags.conftest import SYSTEM, make_flag, make_token
from .conftest import EventStream
from .specification import SPEC_DIR

HYDRATION_FILE = SPEC_DIR / "19-delta-api-hydration.json"
EVENTS_FILE = SPEC_DIR / "20-delta-api-events.json"
# File 19's feature also carries a feature-level "segments" list, which is not part of
# Unleash's client feature schema (segments belong to strategies); every other key must be there.
NOT_IN_CLIENT_FEATURE_SCHEMA = {"segments"}

pytestmark = pytest.mark.skipif(
    not (HYDRATION_FILE.exists() and EVENTS_FILE.exists()),
    reason=f"delta API files 19-20 not found in {SPEC_DIR}",
)


def _spec_events(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["state"]["events"]


def _shape_by_type(path: Path) -> dict[str, set[str]]:
    return {event["type"]: set(event) for event in _spec_events(path)}


def test_streaming__connect__hydration_shaped_like_spec_file_19(
    open_stream: Callable[[str], EventStream], tenant: Tenant
) -> None:
    production = tenant.environments.get(slug="production")
    services.segment_create(
        actor=SYSTEM,
        environment=production,
        name="beta",
        reason="t",
        constraints=[{"contextName": "appName", "operator": "IN", "values": ["abc"]}],
    )
    make_flag(
        production,
        "delta.api.hydration",
        strategies=[
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": "100", "stickiness": "default"},
                "segments": [1],
            }
        ],
    )
    [spec_event] = _spec_events(HYDRATION_FILE)

    name, data = open_stream(make_token(production)).next_event()

    assert name == "unleash-connected"
    [event] = data["events"]
    assert set(event) == set(spec_event)
    assert event["type"] == "hydration"
    [feature] = event["features"]
    assert set(spec_event["features"][0]) - NOT_IN_CLIENT_FEATURE_SCHEMA <= set(feature)
    assert set(event["segments"][0]) >= set(spec_event["segments"][0])
    assert set(event["segments"][0]["constraints"][0]) == set(
        spec_event["segments"][0]["constraints"][0]
    )
    assert set(feature["strategies"][0]) >= set(spec_event["features"][0]["strategies"][0])


def test_streaming__changes__updated_events_shaped_like_spec_file_20(
    open_stream: Callable[[str], EventStream], tenant: Tenant
) -> None:
    production = tenant.environments.get(slug="production")
    kept = make_flag(production, "delta.api.events.updated.1")
    doomed = make_flag(production, "delta.api.events.updated.2")
    shapes = _shape_by_type(EVENTS_FILE)
    stream = open_stream(make_token(production))
    assert stream.next_event()[0] == "unleash-connected"

    def next_update() -> list[dict[str, Any]]:
        name, data = stream.next_event()
        assert name == "unleash-updated"
        return data["events"]

    services.flag_toggle(actor=SYSTEM, flag=kept, enabled=False, reason="t")
    [updated] = next_update()
    services.flag_delete(actor=SYSTEM, flag=doomed, reason="t")
    [removed] = next_update()
    segment = services.segment_create(
        actor=SYSTEM,
        environment=production,
        name="my-segment",
        reason="t",
        constraints=[{"contextName": "appName", "operator": "IN", "values": ["abc"]}],
    )
    [segment_updated] = next_update()
    make_flag(
        production, "delta.api.events.updated.3", strategies=[{"name": "default", "segments": [1]}]
    )
    [created] = next_update()
    services.flag_update(
        actor=SYSTEM,
        flag=kept.__class__.objects.get(name="delta.api.events.updated.3"),
        strategies=[{"name": "default"}],
        reason="t",
    )
    next_update()
    services.segment_delete(actor=SYSTEM, segment=segment, reason="t")
    [segment_removed] = next_update()

    assert set(updated) == shapes["feature-updated"] and updated["type"] == "feature-updated"
    assert (
        updated["feature"]["name"] == "delta.api.events.updated.1"
        and updated["feature"]["enabled"] is False
    )
    assert set(removed) == shapes["feature-removed"]
    assert (removed["type"], removed["featureName"], removed["project"]) == (
        "feature-removed",
        "delta.api.events.updated.2",
        "default",
    )
    assert (
        set(segment_updated) == shapes["segment-updated"] and segment_updated["segment"]["id"] == 1
    )
    assert set(segment_updated["segment"]) >= set(_spec_events(EVENTS_FILE)[3]["segment"])
    assert created["feature"]["strategies"][0]["segments"] == [1]
    assert segment_removed == {
        "eventId": segment_removed["eventId"],
        "type": "segment-removed",
        "segmentId": 1,
    }
    assert updated["eventId"] < removed["eventId"] < segment_updated["eventId"] < created["eventId"]
