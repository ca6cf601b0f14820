"""The Unleash client API on the runtime fast path: ``GET /api/client/features`` (with
``namePrefix`` and ``project``), ``GET /api/client/features/{name}`` and
``GET /api/client/streaming``. Builders run once per revision, token scope and variant; the
fast path answers ETag/304 and keeps the stream open (see docs/decisions/0001).

It lives in ``runtimes`` beside the signed snapshot: both runtime-facing documents are
composed here from the flags and kill-switch selectors (flags never import runtimes), and
``apps.runtimes.serving`` registers their routes with the fast path."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction

from apps.core.fastpath import Route, StreamRoute, TokenScope, register, register_stream
from apps.flags.selectors import environment_features, kill_switch_dict, kill_switches_engaged_for
from apps.flags.unleash import (
    body_etag,
    client_features_body,
    delta_events,
    filter_features,
    hydration_body,
    kill_features,
    query_hash,
    single_feature,
)
from apps.rollouts.selectors import rollout_runtime_document, rollouts_serving
from apps.tenancy.models import Environment

from .unleash_client_schema import FEATURE, FEATURES, STREAMING

FEATURES_PATH = "/api/client/features"
FEATURE_PATH = "/api/client/features/{name:path}"  # any rest, as Unleash: no such name, 404
STREAMING_PATH = "/api/client/streaming"
SEGMENTS_SPEC = (4, 2, 0)  # clients from this spec on read top-level segments
_VERSION = re.compile(r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def _spec_version(value: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(value or "")
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0), int(match.group(3) or 0)


def features_variant(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """``segments`` for SDKs announcing ``Unleash-Client-Spec`` >= 4.2.0; ``inline`` (segment
    constraints copied into each strategy) for older ones and for anything else."""
    version = _spec_version(headers.get("unleash-client-spec", ""))
    return "segments" if version is not None and version >= SEGMENTS_SPEC else "inline"


def environment_state(scope: TokenScope) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """(revision, features including kill switches, segments) for a token's scope. The
    revision is read first: content read after it is at least as new, so a body is never
    labelled with a revision newer than what it shows."""
    with transaction.atomic():
        environment = Environment.objects.get(pk=scope.environment_id)
        revision = environment.revision
        features, segments = environment_features(environment_id=environment.pk)
        switches = [
            kill_switch_dict(s)
            for s in kill_switches_engaged_for(environment=environment, agent_id=scope.agent_id)
        ]
        rollouts = rollout_features(environment_id=environment.pk, agent_id=scope.agent_id)
    return revision, [*features, *kill_features(switches), *rollouts], segments


ROLLOUT_PREFIX = "rollout."


def rollout_feature_name(agent_slug: str) -> str:
    """``rollout.<agent-slug>``: the feature that carries the traffic split of the rollout of
    that agent (the ``rollout.`` prefix is reserved: no flag may take such a name)."""
    return f"{ROLLOUT_PREFIX}{agent_slug}"


def rollout_feature(*, agent_slug: str, rollout: Mapping[str, Any]) -> dict[str, Any]:
    """The Unleash feature of one rollout (the snapshot's ``rollout`` object, from
    ``rollout_runtime_document``): enabled, with one ``flexibleRollout`` strategy
    (``rollout`` = the canary percentage, ``stickiness``, ``groupId``) narrowed by the
    rollout's constraints. An unmodified Unleash SDK's ``is_enabled("rollout.<agent>",
    context)`` is then true exactly for the sessions the snapshot sends to the candidate
    (docs/runtime-api.md): same MurmurHash3 bucketing of ``groupId:stickiness-value``.
    In shadow phase the percentage is 0 (no live traffic to the candidate); the shadow share
    is in ``description`` only, as it is no on/off decision an SDK makes."""
    # Unleash's flexibleRollout takes a whole percentage (SDKs parse an integer). Buckets are
    # whole numbers 1..100 and a session is in when its bucket <= the percentage, so the
    # runtime's float comparison with 1.5 admits exactly the buckets that 1 does: the floor
    # is the same split, and an SDK never sees a number it cannot parse.
    shown = str(math.floor(rollout["percentage"]))
    return {
        "name": rollout_feature_name(agent_slug),
        "type": "release",
        "description": f"Rollout #{rollout['id']} of {agent_slug}: {rollout['phase']}, "
        f"{rollout['percentage']:g}% of sessions on the candidate"
        + (f", {rollout['shadow_percentage']:g}% shadowed" if rollout["shadow_percentage"] else "")
        + ". Managed by the control plane: enabled means serve the candidate.",
        "enabled": True,
        "stale": False,
        "impressionData": False,
        "project": "default",
        "strategies": [
            {
                "name": "flexibleRollout",
                "parameters": {
                    "rollout": shown,
                    "stickiness": rollout["stickiness"],
                    "groupId": rollout["group_id"],
                },
                "constraints": [
                    {
                        "contextName": c["contextName"],
                        "operator": c["operator"],
                        "values": list(c["values"]),
                        "inverted": False,
                        "caseInsensitive": False,
                    }
                    for c in rollout["constraints"]
                ],
                "segments": [],
                "variants": [],
            }
        ],
        "variants": [],
    }


def rollout_features(*, environment_id: int, agent_id: int | None) -> list[dict[str, Any]]:
    """One ``rollout.<agent-slug>`` feature per agent with a rollout serving in the
    environment (shadow, canary or paused), sorted by name; for an agent-scoped token, only
    its agent's."""
    serving = rollouts_serving(environment_id=environment_id, agent_id=agent_id)
    features = [
        rollout_feature(agent_slug=r.agent.slug, rollout=rollout_runtime_document(r))
        for r in serving.values()
    ]
    return sorted(features, key=lambda feature: feature["name"])


def build_features(scope: TokenScope, variant: str, key: str) -> tuple[int, bytes]:
    revision, features, segments = environment_state(scope)
    return revision, client_features_body(
        features=features,
        segments=segments,
        revision=revision,
        query=query_hash(scope.environment_id, scope.agent_id, variant),
        with_segments=variant == "segments",
    )


def features_view_key(params: Mapping[str, str], query: Sequence[tuple[str, str]]) -> str:
    """Which part of the features body a request asks for: one feature
    (``/api/client/features/<name>``), the features matching ``namePrefix`` and ``project``
    (repeatable, as Unleash accepts it), or everything (``""``)."""
    if "name" in params:
        return "feature:" + params["name"]
    name_prefix = ""
    projects: set[str] = set()
    for key, value in query:
        if key == "namePrefix":
            name_prefix = value
        elif key in ("project", "project[]") and value:
            projects.add(value)
    if not name_prefix and not projects:
        return ""
    return "filter:" + json.dumps([name_prefix, sorted(projects)])


def features_view(body: bytes, key: str) -> bytes | None:
    kind, _, argument = key.partition(":")
    if kind == "feature":
        return single_feature(body, argument)
    name_prefix, projects = json.loads(argument)
    return filter_features(body, name_prefix=name_prefix, projects=projects)


def feature_not_found(params: Mapping[str, str]) -> str:
    return f"No feature named {params.get('name', '')!r} in this token's environment."


def build_hydration(scope: TokenScope, variant: str, key: str) -> tuple[int, bytes]:
    revision, features, segments = environment_state(scope)
    return revision, hydration_body(features=features, segments=segments, revision=revision)


def register_routes() -> None:
    """Serve the features (whole or filtered, and one by name) and the stream; each waits on
    the token's environment's ``environment.revision`` (the routes' default topic)."""
    features = Route(
        path=FEATURES_PATH,
        kind="unleash-features",
        build=build_features,
        variant=features_variant,
        view_key=features_view_key,
        view=features_view,
        etag_of=body_etag,
        vary=("Unleash-Client-Spec",),
        not_found=feature_not_found,
        docs=(FEATURES,),
    )
    register(features)
    # the same cached body (same kind), one feature of it
    register(dataclasses.replace(features, path=FEATURE_PATH, docs=(FEATURE,)))
    register_stream(
        StreamRoute(
            path=STREAMING_PATH,
            kind="unleash-streaming",
            build=build_hydration,
            connected_event="unleash-connected",
            updated_event="unleash-updated",
            delta=delta_events,
            vary=("Unleash-Client-Spec",),
            docs=(STREAMING,),
        )
    )
