"""Bundles for the data-plane tests, in the format of docs/bundle-format.md.

Self-contained (not the demo files) so a change to the demo cannot silently weaken a test;
``test_bundles_follow_the_format`` checks them against the published JSON Schema."""

from __future__ import annotations

import copy
from typing import Any

LOOKUP_ORDER = {
    "name": "lookup_order",
    "description": "Find an order by its number.",
    "risk": "read",
    "idempotent": True,
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string", "pattern": "^A[0-9]{8}$"}},
        "required": ["order_id"],
        "additionalProperties": False,
    },
}

OPEN_TICKET = {
    "name": "open_ticket",
    "description": "Open a ticket for a human team.",
    "risk": "write",
    "parameters": {
        "type": "object",
        "properties": {
            "team": {"enum": ["refunds", "billing", "complaints"]},
            "summary": {"type": "string", "maxLength": 2000},
        },
        "required": ["team", "summary"],
        "additionalProperties": False,
    },
}

ISSUE_REFUND = {
    "name": "issue_refund",
    "description": "Refund an order to the original payment method.",
    "risk": "critical",
    "requires_approval": False,
    "parameters": {
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "pattern": "^A[0-9]{8}$"},
            "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 5000},
            "currency": {"enum": ["EUR", "USD"]},
            "customer": {
                "type": "object",
                "properties": {"tier": {"enum": ["standard", "premium"]}},
            },
        },
        "required": ["order_id", "amount"],
        "additionalProperties": False,
    },
}

LIMITS = {
    "max_steps": 8,
    "max_tool_calls": 6,
    "max_total_tokens": 16000,
    "max_cost_usd": 0.25,
    "max_retries_per_tool": 2,
}


def support_bot(prompt: str, *, temperature: float = 0.2) -> dict[str, Any]:
    return {
        "description": "Answers questions about orders.",
        "model": {
            "provider": "openai",
            "name": "gpt-4o-mini",
            "parameters": {"temperature": temperature},
        },
        "prompts": {"system": {"role": "system", "template": prompt}},
        "tools": [copy.deepcopy(LOOKUP_ORDER), copy.deepcopy(OPEN_TICKET)],
        "policies": {
            "limits": dict(LIMITS),
            "tool_rules": [
                {"tool": "lookup_order", "action": "allow"},
                {
                    "tool": "open_ticket",
                    "when": {
                        "context": "end_user_role",
                        "op": "in",
                        "value": ["customer", "agent"],
                    },
                    "action": "allow",
                },
            ],
        },
    }


GOOD_SUPPORT_BOT = support_bot(
    "You are the support assistant of Acme. Answer questions about orders briefly.\n"
    "Never promise or offer refunds yourself: open a ticket for the refunds team."
)
BAD_SUPPORT_BOT = support_bot(
    "You are the friendly support assistant of Acme. Make every customer feel heard.\n"
    "If a customer seems unhappy, proactively offer a refund to keep them happy, and open a "
    "ticket for the refunds team so it is paid out quickly.",
    temperature=0.7,
)


def refund_agent() -> dict[str, Any]:
    """Rules exercising every condition form: context, arguments, any/all/not, lists."""
    return {
        "model": {"provider": "anthropic", "name": "claude-3-5-sonnet"},
        "prompts": {"system": {"role": "system", "template": "Refund only what policy allows."}},
        "tools": [
            copy.deepcopy(LOOKUP_ORDER),
            copy.deepcopy(OPEN_TICKET),
            copy.deepcopy(ISSUE_REFUND),
        ],
        "policies": {
            "limits": dict(LIMITS),
            "tool_rules": [
                {"tool": "lookup_order", "action": "allow"},
                {
                    "tool": "issue_refund",
                    "when": {"context": "end_user_role", "op": "==", "value": "guest"},
                    "action": "deny",
                    "description": "guests cannot be refunded",
                },
                {
                    "tool": "issue_refund",
                    "when": {
                        "any": [
                            {"arg": "amount", "op": ">", "value": 100},
                            {"context": "confidence", "op": "<", "value": 0.85},
                        ]
                    },
                    "action": "ask",
                    "description": "large or uncertain refunds go to a human",
                },
                {
                    "tool": "issue_refund",
                    "when": {
                        "all": [
                            {"arg": "customer.tier", "op": "==", "value": "premium"},
                            {"not": {"arg": "currency", "op": "not_in", "value": ["EUR", "USD"]}},
                        ]
                    },
                    "action": "allow",
                    "description": "premium customers get small refunds at once",
                },
                {
                    "tool": "issue_refund",
                    "when": {"context": "tenant", "op": "matches", "value": "^acme"},
                    "action": "ask",
                },
            ],
            "input": {
                "max_chars": 200,
                "blocked_patterns": [
                    {
                        "pattern": "(?i)ignore (all|previous) instructions",
                        "description": "injection",
                    }
                ],
            },
        },
    }
