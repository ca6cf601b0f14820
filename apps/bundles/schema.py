"""The bundle file format as a JSON Schema (draft 2020-12): validated here and published at
``/api/v1/schemas/bundle.json`` (and in ``docs/bundle.schema.json``) so editors check files
as they are written. docs/bundle-format.md explains every field."""

from __future__ import annotations

import copy
from typing import Any

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_PATH = "/api/v1/schemas/bundle.json"

MAX_BUNDLE_BYTES = 1024 * 1024
MAX_DEPTH = 32  # nested objects and lists; real bundles stay under ~12
MAX_NODES = 100_000

TOOL_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
PROMPT_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
VARIABLE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
TOOL_GLOB_PATTERN = r"^[A-Za-z0-9_*?\[\]!-]{1,64}$"
ARG_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
SUITE_PATTERN = SLUG_PATTERN

# What each pattern means, for error messages people can act on.
PATTERN_HELP = {
    TOOL_NAME_PATTERN: "Tool names are 1-64 letters, digits, '_' or '-', starting with a letter "
    "(what model APIs accept).",
    PROMPT_NAME_PATTERN: "Prompt names are 1-64 letters, digits, '_', '.' or '-', "
    "starting with a letter.",
    VARIABLE_NAME_PATTERN: "Variable names are letters, digits and '_', not starting with a digit.",
    TOOL_GLOB_PATTERN: "A tool pattern is a tool name or a glob of letters, digits, '_', '-' and "
    "* ? [ ] !, e.g. issue_* or *.",
    ARG_PATH_PATTERN: "An argument is a parameter name, or a dotted path into an object argument "
    "(customer.tier).",
    SLUG_PATTERN: "Use 1-64 lowercase letters, digits, '_', '.' or '-', "
    "starting with a letter or digit.",
}

RISKS = ["read", "write", "critical"]
RULE_ACTIONS = ["allow", "deny", "ask"]
PROMPT_ROLES = ["system", "user", "assistant"]
VARIABLE_SOURCES = ["user", "system", "retrieval", "tool", "memory"]
# Whoever can shape these values can try to inject instructions.
UNTRUSTED_SOURCES = frozenset({"user", "retrieval", "tool", "memory"})
CONTEXT_KEYS = ["end_user_role", "tenant", "environment", "confidence"]
COMPARISON_OPS = ["==", "!=", ">", ">=", "<", "<="]
NUMERIC_OPS = [">", ">=", "<", "<="]
LIST_OPS = ["in", "not_in"]
OPERATORS = [*COMPARISON_OPS, *LIST_OPS, "matches", "exists"]
REDACTION_CLASSES = [
    "email",
    "phone",
    "credit_card",
    "iban",
    "ssn",
    "ip_address",
    "api_key",
    "person_name",
    "address",
]
CHUNKING_STRATEGIES = ["fixed", "sentence", "paragraph", "semantic"]
LIMIT_KEYS = [
    "max_steps",
    "max_tool_calls",
    "max_total_tokens",
    "max_cost_usd",
    "max_retries_per_tool",
]


def _positive_int(description: str, maximum: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "exclusiveMinimum": 0, "description": description}
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _text(description: str, max_length: int = 2000, min_length: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length, "description": description}
    if min_length:
        schema["minLength"] = min_length
    return schema


_SCALAR = {"type": ["string", "number", "boolean", "null"]}

_DEFS: dict[str, Any] = {
    "model": {
        "type": "object",
        "description": "The model the agent runs on.",
        "additionalProperties": False,
        "required": ["provider", "name"],
        "properties": {
            "provider": {
                "type": "string",
                "pattern": SLUG_PATTERN,
                "description": "e.g. openai, anthropic",
            },
            "name": _text("the provider's model name, e.g. gpt-4o-mini", 200, 1),
            "parameters": {
                "type": "object",
                "description": "Sampling parameters; provider-specific extras must be scalars.",
                "properties": {
                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                    "max_output_tokens": _positive_int("tokens the model may write per call"),
                    "seed": {"type": "integer"},
                    "stop": {
                        "type": "array",
                        "maxItems": 8,
                        "items": {"type": "string", "minLength": 1},
                    },
                    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                },
                "additionalProperties": _SCALAR,
            },
        },
    },
    "variable": {
        "type": "object",
        "additionalProperties": False,
        "required": ["source"],
        "properties": {
            "source": {
                "enum": VARIABLE_SOURCES,
                "description": "who supplies the value: user, retrieval, tool and memory are "
                "untrusted (prompt-injection surface); system is set by the runtime",
            },
            "description": _text("what the value is"),
            "max_chars": _positive_int("longest value the runtime accepts"),
        },
    },
    "prompt": {
        "type": "object",
        "additionalProperties": False,
        "required": ["role", "template"],
        "properties": {
            "role": {"enum": PROMPT_ROLES},
            "description": _text("what the prompt is for"),
            "template": _text("the text; {{ name }} inserts a declared variable", 200_000, 1),
            "variables": {
                "type": "object",
                "description": "every {{ variable }} the template uses, "
                "with where its value comes from",
                "propertyNames": {"pattern": VARIABLE_NAME_PATTERN},
                "additionalProperties": {"$ref": "#/$defs/variable"},
            },
        },
    },
    "tool": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "description", "parameters", "risk"],
        "properties": {
            "name": {"type": "string", "pattern": TOOL_NAME_PATTERN},
            "description": _text("what the tool does, as the model reads it", 4000, 1),
            "parameters": {
                "type": "object",
                "description": "JSON Schema (draft 2020-12) of the arguments; describes an object",
            },
            "risk": {
                "enum": RISKS,
                "description": "read: no side effect; write: changes something; "
                "critical: money, data loss or anything hard to undo",
            },
            "requires_approval": {
                "type": "boolean",
                "default": False,
                "description": "every call waits for a human, whatever the rules say",
            },
            "idempotent": {
                "type": "boolean",
                "default": False,
                "description": "calling twice with the same arguments is safe to retry",
            },
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600, "default": 30},
            "rate_limit": {
                "type": "object",
                "description": "at most max_calls calls per per_s seconds, per runtime",
                "additionalProperties": False,
                "required": ["max_calls", "per_s"],
                "properties": {
                    "max_calls": _positive_int("calls allowed in the window"),
                    "per_s": _positive_int("window length in seconds"),
                },
            },
            "sensitive_args": {
                "type": "array",
                "description": "arguments redacted in audit, telemetry and approval views",
                "uniqueItems": True,
                "items": {"type": "string", "minLength": 1},
            },
        },
    },
    "condition": {
        "type": "object",
        "description": "{arg|context, op, value}, or {all: [...]}, {any: [...]}, {not: {...}}",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "all": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}},
            "any": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}},
            "not": {"$ref": "#/$defs/condition"},
            "arg": {
                "type": "string",
                "pattern": ARG_PATH_PATTERN,
                "description": "a tool argument",
            },
            "context": {
                "enum": CONTEXT_KEYS,
                "description": "a fact of the request the runtime supplies",
            },
            "op": {"enum": OPERATORS},
            "value": {},
        },
        "oneOf": [
            {"required": ["all"], "maxProperties": 1},
            {"required": ["any"], "maxProperties": 1},
            {"required": ["not"], "maxProperties": 1},
            {
                "required": ["arg", "op"],
                "properties": {"all": False, "any": False, "not": False, "context": False},
            },
            {
                "required": ["context", "op"],
                "properties": {"all": False, "any": False, "not": False, "arg": False},
            },
        ],
    },
    "tool_rule": {
        "type": "object",
        "additionalProperties": False,
        "required": ["tool", "action"],
        "properties": {
            "tool": {"type": "string", "pattern": TOOL_GLOB_PATTERN},
            "when": {"$ref": "#/$defs/condition"},
            "action": {"enum": RULE_ACTIONS},
            "description": _text("why the rule exists"),
        },
    },
    "policies": {
        "type": "object",
        "additionalProperties": False,
        "required": ["limits"],
        "properties": {
            "limits": {
                "type": "object",
                "description": "per-request caps the runtime enforces",
                "additionalProperties": False,
                "required": LIMIT_KEYS,
                "properties": {
                    "max_steps": _positive_int("model turns per request"),
                    "max_tool_calls": _positive_int("tool calls per request"),
                    "max_total_tokens": _positive_int("input plus output tokens per request"),
                    "max_cost_usd": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "description": "spend per request, US dollars",
                    },
                    "max_retries_per_tool": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "retries of one failing tool call; 0 = none",
                    },
                },
            },
            "tool_rules": {
                "type": "array",
                "description": "ordered; the first rule that matches decides; no match = deny",
                "maxItems": 512,
                "items": {"$ref": "#/$defs/tool_rule"},
            },
            "input": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "max_chars": _positive_int("longest end-user message accepted"),
                    "blocked_patterns": {
                        "type": "array",
                        "maxItems": 200,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["pattern"],
                            "properties": {
                                "pattern": {
                                    "type": "string",
                                    "minLength": 1,
                                    "maxLength": 1000,
                                    "description": "a regular expression (Python syntax)",
                                },
                                "description": _text("what it blocks"),
                            },
                        },
                    },
                },
            },
            "output": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "redact": {
                        "type": "array",
                        "uniqueItems": True,
                        "items": {"enum": REDACTION_CLASSES},
                        "description": "classes of data masked in the agent's replies",
                    },
                },
            },
        },
    },
    "retrieval": {
        "type": "object",
        "additionalProperties": False,
        "required": ["index", "embedding_model", "chunking"],
        "properties": {
            "index": {"type": "string", "pattern": SLUG_PATTERN},
            "embedding_model": _text("the embedding model's name", 200, 1),
            "top_k": _positive_int("chunks retrieved per query", 100),
            "chunking": {
                "type": "object",
                "additionalProperties": False,
                "required": ["strategy", "size"],
                "properties": {
                    "strategy": {"enum": CHUNKING_STRATEGIES},
                    "size": _positive_int("tokens per chunk"),
                    "overlap": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "tokens shared by neighbours",
                    },
                },
            },
        },
    },
    "memory": {
        "type": "object",
        "additionalProperties": False,
        "required": ["ttl_s", "max_entries", "writers"],
        "properties": {
            "ttl_s": _positive_int("seconds a remembered fact lives"),
            "max_entries": _positive_int("facts kept per end user"),
            "writers": {
                "type": "object",
                "description": "who may write memory",
                "additionalProperties": False,
                "properties": {
                    "user": {"type": "boolean", "description": "the end user's own statements"},
                    "tools": {
                        "type": "array",
                        "uniqueItems": True,
                        "items": {"type": "string"},
                        "description": "tools whose results may be remembered",
                    },
                },
            },
            "require_provenance": {
                "type": "boolean",
                "default": True,
                "description": "every fact records who wrote it and when",
            },
        },
    },
}

BUNDLE_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_DIALECT,
    "title": "Agent bundle",
    "description": "One release of an agent: model, prompts, tool contracts and policies, "
    "shipped and versioned together. See docs/bundle-format.md.",
    "type": "object",
    "additionalProperties": False,
    "required": ["model", "prompts", "policies"],
    "properties": {
        "$schema": {"type": "string", "description": "the schema URL, for editors"},
        "description": _text("what this agent does"),
        "model": {"$ref": "#/$defs/model"},
        "prompts": {
            "type": "object",
            "description": "named prompt templates",
            "minProperties": 1,
            "propertyNames": {"pattern": PROMPT_NAME_PATTERN},
            "additionalProperties": {"$ref": "#/$defs/prompt"},
        },
        "tools": {"type": "array", "maxItems": 256, "items": {"$ref": "#/$defs/tool"}},
        "policies": {"$ref": "#/$defs/policies"},
        "retrieval": {"$ref": "#/$defs/retrieval"},
        "memory": {"$ref": "#/$defs/memory"},
    },
    "$defs": _DEFS,
}


def bundle_json_schema(*, schema_id: str | None = None) -> dict[str, Any]:
    """The published schema; ``schema_id`` is the URL it is served from."""
    schema = copy.deepcopy(BUNDLE_SCHEMA)
    if schema_id:
        schema = {
            "$schema": schema["$schema"],
            "$id": schema_id,
            **{k: v for k, v in schema.items() if k != "$schema"},
        }
    return schema
