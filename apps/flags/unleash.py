"""The Unleash wire shapes: stored flags, segments and kill switches as an Unleash client
features payload (v2), the streaming hydration event, and the delta between two states.
Pure functions over plain values; the builders that read the database are in
``apps/runtimes/unleash_client.py``.

Kill switches compile to synthetic features (see docs/kill-switches.md):

- ``kill.tool.<pattern>``: the tool (name or glob) is disabled for every agent;
- ``kill.agent.<agent>.tool.<pattern>``: the tool is disabled for one agent;
- ``kill.agent.<agent>.mode.read_only`` / ``.mode.draft_only``: the agent's forced mode;
- ``kill.agent.<agent>``: the agent is stopped.

Each is enabled with a ``default`` strategy, type ``kill-switch``, for as long as the switch
is engaged; an SDK asks ``is_enabled("kill.agent.support-bot")``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

KILL_PREFIX = "kill."
# A constraint no context can satisfy (IN with no values), standing in for a segment that
# does not exist when segments are inlined: the SDKs treat a missing segment as "no match".
_NEVER = {
    "contextName": "segment",
    "operator": "IN",
    "values": [],
    "caseInsensitive": False,
    "inverted": False,
}


def kill_feature_name(
    *, kind: str, agent: str | None, tool_pattern: str = "", mode: str = ""
) -> str:
    if kind == "tool_disabled":
        return f"kill.agent.{agent}.tool.{tool_pattern}" if agent else f"kill.tool.{tool_pattern}"
    if kind == "agent_mode":
        return f"kill.agent.{agent}.mode.{mode}"
    if kind == "agent_stopped":
        return f"kill.agent.{agent}"
    raise ValueError(f"unknown kill switch kind {kind!r}")


def kill_features(switches: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Synthetic features for engaged kill switches (dicts as ``kill_switches_for_snapshot``
    returns them). Several switches with the same effect make one feature."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for switch in switches:
        name = kill_feature_name(
            kind=switch["kind"],
            agent=switch.get("agent"),
            tool_pattern=switch.get("tool_pattern") or "",
            mode=switch.get("mode") or "",
        )
        by_name.setdefault(name, []).append(switch)
    features = []
    for name in sorted(by_name):
        reasons = "; ".join(f"#{s['id']} ({s['scope']}): {s['reason']}" for s in by_name[name])
        features.append(
            {
                "name": name,
                "type": "kill-switch",
                "description": f"Kill switch engaged. {reasons}",
                "enabled": True,
                "stale": False,
                "impressionData": False,
                "project": "default",
                "strategies": [
                    {
                        "name": "default",
                        "parameters": {},
                        "constraints": [],
                        "segments": [],
                        "variants": [],
                    }
                ],
                "variants": [],
            }
        )
    return features


def feature_document(feature: Mapping[str, Any]) -> dict[str, Any]:
    """A stored feature (``validation.normalize_feature`` shape) as served to SDKs."""
    document = {
        "name": feature["name"],
        "type": feature["type"],
        "description": feature.get("description") or "",
        "enabled": feature["enabled"],
        "stale": feature.get("stale", False),
        "impressionData": feature.get("impressionData", False),
        "project": feature.get("project") or "default",
        "strategies": [dict(s) for s in feature.get("strategies") or []],
        "variants": list(feature.get("variants") or []),
    }
    if feature.get("dependencies"):
        document["dependencies"] = list(feature["dependencies"])
    return document


def inline_segments(
    features: list[dict[str, Any]], segments: Mapping[int, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """For SDKs older than client spec 4.2.0, which know no top-level segments: each
    strategy carries its segments' constraints itself."""
    result = []
    for feature in features:
        strategies = []
        for strategy in feature["strategies"]:
            strategy = dict(strategy)
            ids = strategy.pop("segments", None) or []
            extra: list[dict[str, Any]] = []
            for segment_id in ids:
                extra.extend(segments.get(segment_id, [_NEVER]))
            strategy["constraints"] = [*strategy.get("constraints", []), *extra]
            strategies.append(strategy)
        result.append({**feature, "strategies": strategies})
    return result


def _dumps(value: Any) -> bytes:
    # One line (server-sent events carry it as a single data field), stable key order.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def query_hash(environment_id: int, agent_id: int | None, variant: str) -> str:
    return hashlib.sha256(
        f"environment={environment_id};agent={agent_id};{variant}".encode()
    ).hexdigest()[:16]


def client_features_body(
    *,
    features: list[dict[str, Any]],
    segments: list[dict[str, Any]],
    revision: int,
    query: str,
    with_segments: bool,
) -> bytes:
    """The ``GET /api/client/features`` body (Unleash client API v2)."""
    if with_segments:
        body: dict[str, Any] = {"version": 2, "features": features, "segments": segments}
    else:
        constraints = {s["id"]: s["constraints"] for s in segments}
        body = {"version": 2, "features": inline_segments(features, constraints)}
    return _with_meta(body, revision=revision, query=query)


def _with_meta(body: Mapping[str, Any], *, revision: int, query: str) -> bytes:
    """The body with Unleash's ``meta`` block. ``meta.etag`` is exactly the HTTP ``ETag`` the
    fast path sends with it (``body_etag``): Unleash's ``"<queryHash[:8]>:<revision>"``
    followed by a digest of the content, so two bodies labelled with the same revision
    (built while a change committed) never share a tag."""
    content = {key: value for key, value in body.items() if key != "meta"}
    digest = hashlib.sha256(_dumps(content)).hexdigest()[:16]
    content["meta"] = {
        "revisionId": revision,
        "etag": f'"{query[:8]}:{revision}:{digest}"',
        "queryHash": query,
    }
    return _dumps(content)


def body_etag(body: bytes) -> str | None:
    """``meta.etag`` of a client features body: the entity tag it is served under."""
    meta = json.loads(body).get("meta")
    return meta.get("etag") if isinstance(meta, dict) else None


def filter_features(body: bytes, *, name_prefix: str, projects: Iterable[str]) -> bytes:
    """A client features body narrowed as Unleash narrows it for ``?namePrefix=`` (names
    starting with it) and ``?project=`` (features of any of these projects; none given: all),
    with its own ``meta`` (query hash and tag)."""
    document = json.loads(body)
    wanted = set(projects)
    features = [
        feature
        for feature in document["features"]
        if feature["name"].startswith(name_prefix)
        and (not wanted or (feature.get("project") or "default") in wanted)
    ]
    meta = document["meta"]
    query = hashlib.sha256(
        json.dumps([meta["queryHash"], name_prefix, sorted(wanted)]).encode()
    ).hexdigest()[:16]
    return _with_meta({**document, "features": features}, revision=meta["revisionId"], query=query)


def single_feature(body: bytes, name: str) -> bytes | None:
    """One feature of a client features body, as Unleash's ``GET /api/client/features/{name}``
    answers it (the feature object itself); None when there is none of that name."""
    for feature in json.loads(body)["features"]:
        if feature["name"] == name:
            return _dumps(feature)
    return None


def hydration_body(
    *, features: list[dict[str, Any]], segments: list[dict[str, Any]], revision: int
) -> bytes:
    """The ``unleash-connected`` event of ``GET /api/client/streaming``."""
    return _dumps(
        {
            "events": [
                {
                    "type": "hydration",
                    "eventId": revision,
                    "features": features,
                    "segments": segments,
                }
            ]
        }
    )


def delta_events(old_body: bytes, new_body: bytes) -> str | None:
    """The ``unleash-updated`` event between two hydration bodies, or None when nothing an
    SDK sees changed. Segments are updated before the features that may use them and
    removed after the features that used them."""
    old = json.loads(old_body)["events"][0]
    new = json.loads(new_body)["events"][0]
    event_id = new["eventId"]
    old_features = {f["name"]: f for f in old["features"]}
    new_features = {f["name"]: f for f in new["features"]}
    old_segments = {s["id"]: s for s in old["segments"]}
    new_segments = {s["id"]: s for s in new["segments"]}
    events: list[dict[str, Any]] = []
    for segment_id, segment in sorted(new_segments.items()):
        if old_segments.get(segment_id) != segment:
            events.append({"eventId": event_id, "type": "segment-updated", "segment": segment})
    for name, feature in new_features.items():
        if old_features.get(name) != feature:
            events.append({"eventId": event_id, "type": "feature-updated", "feature": feature})
    for name, feature in old_features.items():
        if name not in new_features:
            events.append(
                {
                    "eventId": event_id,
                    "type": "feature-removed",
                    "featureName": name,
                    "project": feature.get("project") or "default",
                }
            )
    for segment_id in sorted(old_segments):
        if segment_id not in new_segments:
            events.append({"eventId": event_id, "type": "segment-removed", "segmentId": segment_id})
    if not events:
        return None
    return _dumps({"events": events}).decode()


def apply_events(events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A client-features state from delta events (hydration, then updates and removals in
    order): how an import accepts a captured stream."""
    features: dict[str, Any] = {}
    segments: dict[int, Any] = {}
    for event in events:
        kind = event.get("type")
        if kind == "hydration":
            features = {f["name"]: f for f in event.get("features") or []}
            segments = {s["id"]: s for s in event.get("segments") or []}
        elif kind == "feature-updated":
            features[event["feature"]["name"]] = event["feature"]
        elif kind == "feature-removed":
            features.pop(event["featureName"], None)
        elif kind == "segment-updated":
            segments[event["segment"]["id"]] = event["segment"]
        elif kind == "segment-removed":
            segments.pop(event["segmentId"], None)
        else:
            raise ValueError(f"unknown delta event type {kind!r}")
    return {"version": 2, "features": list(features.values()), "segments": list(segments.values())}
