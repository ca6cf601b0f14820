"""OpenAPI description of ``GET /api/runtime/v1/config`` (served by the fast path, see
``snapshot.register_routes``): the signed snapshot envelope as docs/runtime-api.md gives it.
Required are the fields a runtime reads to verify and apply it; more may be added within v1
without a new path, so additional fields are allowed."""

from __future__ import annotations

from typing import Any

from apps.core.fastpath import OperationDoc

_SIGNATURE = {
    "type": "object",
    "properties": {
        "alg": {"type": "string", "enum": ["Ed25519"]},
        "kid": {"type": "string"},
        "value": {"type": "string", "description": "Base64 of the signature."},
    },
    "required": ["alg", "kid", "value"],
}
_RELEASE: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "properties": {
        "version": {"type": "integer"},
        "digest": {"type": "string", "description": "sha256 hex of the canonical bundle."},
        "bundle": {"type": "object", "description": "The bundle, see docs/bundle-format.md."},
        "signature": _SIGNATURE,
        "canonical": {"type": "string"},
    },
    "required": ["version", "digest", "bundle", "signature"],
}

# The traffic split of a running rollout (docs/runtime-api.md, "rollout"); a runtime reads
# absent fields as a plain canary (phase canary, no shadow, no constraints).
_ROLLOUT: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "properties": {
        "id": {"type": "integer"},
        "phase": {"type": "string", "enum": ["shadow", "canary"]},
        "percentage": {"type": "number", "minimum": 0, "maximum": 100},
        "shadow_percentage": {"type": "number", "minimum": 0, "maximum": 100},
        "stickiness": {"type": "string"},
        "group_id": {"type": "string"},
        "constraints": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "contextName": {"type": "string"},
                    "operator": {"type": "string", "enum": ["IN", "NOT_IN"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["contextName", "operator", "values"],
            },
        },
    },
    "required": ["percentage", "stickiness", "group_id"],
}

COMPONENTS: dict[str, dict[str, Any]] = {
    "RuntimeConfig": {
        "type": "object",
        "description": (
            "The signed snapshot (docs/runtime-api.md): `digest` and `signature` are over the "
            "canonical bytes (the `snapshot.canonical` form, RFC 8785) of `snapshot`."
        ),
        "properties": {
            "snapshot": {
                "type": "object",
                "properties": {
                    "schema": {"type": "string", "enum": ["controlplane.snapshot/v1"]},
                    "canonical": {"type": "string"},
                    "tenant": {"type": "string"},
                    "environment": {"type": "string"},
                    "revision": {"type": "integer"},
                    "agents": {
                        "type": "object",
                        "description": "By agent slug.",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {
                                "stable": _RELEASE,
                                "candidate": _RELEASE,
                                "rollout": _ROLLOUT,
                            },
                            "required": ["stable"],
                        },
                    },
                    "flags": {
                        "type": "array",
                        "description": "Unleash features, segments inlined.",
                        "items": {"type": "object"},
                    },
                    "kill_switches": {"type": "array", "items": {"type": "object"}},
                    "budgets": {
                        "type": "array",
                        "description": "budgets in scope with their state in the current "
                        "window (docs/budgets.md)",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "integer"},
                                "name": {"type": "string"},
                                "scope": {"enum": ["tenant", "agent", "tenant_agent", "end_user"]},
                                "agent": {"type": "string", "nullable": True},
                                "window": {"enum": ["hour", "day", "week", "month"]},
                                "window_start": {"type": "string", "format": "date-time"},
                                "resets_at": {"type": "string", "format": "date-time"},
                                "limits": {"type": "object"},
                                "action": {"enum": ["alert", "block", "degrade"]},
                                "degrade": {"type": "object", "nullable": True},
                                "strict": {"type": "boolean"},
                                "state": {"enum": ["ok", "exhausted"]},
                                "exhausted_subjects": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "required": [
                    "schema",
                    "tenant",
                    "environment",
                    "revision",
                    "agents",
                    "flags",
                    "kill_switches",
                ],
            },
            "digest": {"type": "string"},
            "signature": _SIGNATURE,
        },
        "required": ["snapshot", "digest", "signature"],
    }
}

CONFIG = OperationDoc(
    path="/api/runtime/v1/config",
    operation_id="runtime_v1_config_retrieve",
    summary="The signed config snapshot of the token's scope",
    description=(
        "Everything runtimes of the token's environment (and agent, if the token names one) "
        "must obey: stable and candidate bundle releases, flags, engaged kill switches. Poll "
        "with `If-None-Match` and `wait` (long-poll). Served by the runtime fast path."
    ),
    tag="runtime",
    response={"$ref": "#/components/schemas/RuntimeConfig"},
    components=COMPONENTS,
)
