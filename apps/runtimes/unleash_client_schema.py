"""OpenAPI description of the Unleash client API routes the fast path serves
(``unleash_client.register_routes``): the body schemas (Unleash client API v2, as ``flags.unleash``
writes them) and each operation's own parameters. Required are the fields every SDK reads;
anything more is allowed, as Unleash adds fields over time."""

from __future__ import annotations

from typing import Any

from apps.core.fastpath import OperationDoc

TAG = "unleash-client"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_STRING_LIST = {"type": "array", "items": {"type": "string"}}

COMPONENTS: dict[str, dict[str, Any]] = {
    "UnleashConstraint": {
        "type": "object",
        "properties": {
            "contextName": {"type": "string"},
            "operator": {"type": "string"},
            "values": _STRING_LIST,
            "value": {"type": "string"},
            "caseInsensitive": {"type": "boolean"},
            "inverted": {"type": "boolean"},
        },
        "required": ["contextName", "operator"],
    },
    "UnleashVariant": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "weight": {"type": "integer"},
            "weightType": {"type": "string"},
            "stickiness": {"type": "string"},
            "payload": {
                "type": "object",
                "properties": {"type": {"type": "string"}, "value": {"type": "string"}},
                "required": ["type", "value"],
            },
            "overrides": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"contextName": {"type": "string"}, "values": _STRING_LIST},
                },
            },
        },
        "required": ["name"],
    },
    "UnleashStrategy": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "title": {"type": "string", "nullable": True},
            "parameters": {"type": "object", "additionalProperties": {"type": "string"}},
            "constraints": {"type": "array", "items": _ref("UnleashConstraint")},
            "segments": {"type": "array", "items": {"type": "integer"}},
            "variants": {"type": "array", "items": _ref("UnleashVariant")},
        },
        "required": ["name"],
    },
    "UnleashFeature": {
        "type": "object",
        "description": "A flag, or an engaged kill switch as a `kill.*` feature.",
        "properties": {
            "name": {"type": "string"},
            "type": {"type": "string"},
            "description": {"type": "string"},
            "enabled": {"type": "boolean"},
            "stale": {"type": "boolean"},
            "impressionData": {"type": "boolean"},
            "project": {"type": "string"},
            "strategies": {"type": "array", "items": _ref("UnleashStrategy")},
            "variants": {"type": "array", "items": _ref("UnleashVariant")},
            "dependencies": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "feature": {"type": "string"},
                        "enabled": {"type": "boolean"},
                        "variants": _STRING_LIST,
                    },
                    "required": ["feature"],
                },
            },
        },
        "required": ["name", "type", "enabled", "project", "strategies", "variants"],
    },
    "UnleashSegment": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "constraints": {"type": "array", "items": _ref("UnleashConstraint")},
        },
        "required": ["id", "constraints"],
    },
    "UnleashClientFeatures": {
        "type": "object",
        "description": (
            "Unleash client API v2. `segments` only for clients sending "
            "`Unleash-Client-Spec` >= 4.2.0 (older ones get segment constraints inlined)."
        ),
        "properties": {
            "version": {"type": "integer", "enum": [2]},
            "features": {"type": "array", "items": _ref("UnleashFeature")},
            "segments": {"type": "array", "items": _ref("UnleashSegment")},
            "meta": {
                "type": "object",
                "properties": {
                    "revisionId": {"type": "integer"},
                    "etag": {"type": "string", "description": "Exactly the `ETag` header."},
                    "queryHash": {"type": "string"},
                },
                "required": ["revisionId", "etag", "queryHash"],
            },
        },
        "required": ["version", "features", "meta"],
    },
    "UnleashStreamingEvents": {
        "type": "object",
        "description": (
            "`unleash-connected`: one `hydration` event with all features and segments; "
            "`unleash-updated`: `feature-updated`, `feature-removed`, `segment-updated`, "
            "`segment-removed` events."
        ),
        "properties": {
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {
                            "type": "string",
                            "enum": [
                                "hydration",
                                "feature-updated",
                                "feature-removed",
                                "segment-updated",
                                "segment-removed",
                            ],
                        },
                        "eventId": {"type": "integer"},
                        "features": {"type": "array", "items": _ref("UnleashFeature")},
                        "segments": {"type": "array", "items": _ref("UnleashSegment")},
                        "feature": _ref("UnleashFeature"),
                        "segment": _ref("UnleashSegment"),
                        "featureName": {"type": "string"},
                        "project": {"type": "string"},
                        "segmentId": {"type": "integer"},
                    },
                    "required": ["type", "eventId"],
                },
            }
        },
        "required": ["events"],
    },
}

CLIENT_SPEC = {
    "name": "Unleash-Client-Spec",
    "in": "header",
    "required": False,
    "description": (
        "The client specification the SDK follows: from 4.2.0 on, segments are sent at the "
        "top level; before (or absent), inlined into each strategy."
    ),
    "schema": {"type": "string"},
    "example": "5.0.0",
}
NAME_PREFIX = {
    "name": "namePrefix",
    "in": "query",
    "required": False,
    "description": "Only features whose name starts with this (the Node SDK's `namePrefix`).",
    "schema": {"type": "string"},
}
PROJECT = {
    "name": "project",
    "in": "query",
    "required": False,
    "description": (
        "Only features of these Unleash projects (repeatable; a flag's `project`, `default` "
        "unless imported with another). An unknown project gives an empty list."
    ),
    "schema": {"type": "array", "items": {"type": "string"}},
    "style": "form",
    "explode": True,
}
FEATURE_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The feature's name.",
    "schema": {"type": "string", "minLength": 1},
    "example": "new-checkout",
}

FEATURES = OperationDoc(
    path="/api/client/features",
    operation_id="client_features_list",
    summary="Features of the token's environment (Unleash client API)",
    description=(
        "What an Unleash SDK polls: the environment's flags and engaged kill switches (as "
        "`kill.*` features), narrowed by `namePrefix` and `project`. Served by the runtime "
        "fast path from a per-revision cache."
    ),
    tag=TAG,
    response=_ref("UnleashClientFeatures"),
    parameters=(NAME_PREFIX, PROJECT, CLIENT_SPEC),
    components=COMPONENTS,
)
FEATURE = OperationDoc(
    path="/api/client/features/{name}",
    operation_id="client_features_retrieve",
    summary="One feature (Unleash client API)",
    description="One feature of the token's environment, as Unleash answers it.",
    tag=TAG,
    response=_ref("UnleashFeature"),
    parameters=(FEATURE_NAME, CLIENT_SPEC),
    components=COMPONENTS,
)
STREAMING = OperationDoc(
    path="/api/client/streaming",
    operation_id="client_streaming_retrieve",
    summary="Feature changes as server-sent events (Unleash client API)",
    description=(
        "Unleash's streaming mode: the whole state on connect, then each change as it is "
        "committed. The connection stays open."
    ),
    tag=TAG,
    response=_ref("UnleashStreamingEvents"),
    parameters=(CLIENT_SPEC,),
    components=COMPONENTS,
)
