"""What the approvals tests share: a refund agent with a deployed contract, a runtime token,
approvers, and request bodies as a runtime sends them."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import requests

from apps.accounts.models import RuntimeToken
from apps.accounts.runtime_tokens import runtime_token_create
from apps.approvals.models import ApprovalQueue
from apps.approvals.services import queue_create
from apps.audit.services import SystemActor
from apps.bundles.services import bundle_version_push
from apps.core.canonical import canonical_json
from apps.core.roles import Role
from apps.rollouts.services.deployments import deployment_create
from apps.tenancy.models import Agent, Tenant

from ..factories import AgentFactory, make_user

ACTOR = SystemActor("test")
OPEN = "/api/runtime/v1/approvals"

CONTRACT: dict[str, Any] = {
    "description": "Issues refunds.",
    "model": {"provider": "openai", "name": "gpt-4o-mini"},
    "prompts": {"system": {"role": "system", "template": "You issue refunds when allowed."}},
    "tools": [
        {
            "name": "issue_refund",
            "description": "Refund an order.",
            "risk": "critical",
            "requires_approval": True,
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "amount": {"type": "number"},
                    "card_number": {"type": "string"},
                },
                "required": ["order_id", "amount"],
            },
            "sensitive_args": ["card_number"],
        },
        {
            "name": "send_email",
            "description": "Email the customer.",
            "risk": "write",
            "idempotent": True,
            "parameters": {"type": "object"},
        },
        {
            "name": "lookup_order",
            "description": "Read an order.",
            "risk": "read",
            "parameters": {"type": "object"},
        },
    ],
    "policies": {
        "tool_rules": [
            {"tool": "lookup_order", "action": "ask", "description": "reads need a look today"},
            {"tool": "send_email", "action": "ask"},
            {"tool": "issue_refund", "action": "allow"},
        ],
        "limits": {
            "max_steps": 6,
            "max_tool_calls": 4,
            "max_total_tokens": 12000,
            "max_cost_usd": 0.5,
            "max_retries_per_tool": 1,
        },
    },
}


def sha(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(arguments)).hexdigest()


def body(**fields: Any) -> dict[str, Any]:
    """A runtime's request body; ``fields`` override."""
    arguments = fields.pop("arguments", {"order_id": "A-1001", "amount": 42.5})
    data: dict[str, Any] = {
        "idempotency_key": "sess-1:call-1",
        "agent": "refund-agent",
        "tool": "issue_refund",
        "arguments": arguments,
        "arguments_sha256": sha(arguments),
        "reason": "The customer was charged twice for order A-1001.",
        "excerpt": [{"role": "user", "content": "I was charged twice!"}],
        "session_id": "sess-1",
    }
    data.update(fields)
    return data


@pytest.fixture
def agent(tenant: Tenant) -> Agent:
    agent = AgentFactory(tenant=tenant, slug="refund-agent", name="Refund agent")
    version = bundle_version_push(
        actor=ACTOR, agent=agent, content=CONTRACT, message="first"
    ).version
    deployment_create(
        actor=ACTOR,
        agent=agent,
        environment=tenant.environments.get(slug="production"),
        version=version,
        reason="first release",
    )
    return agent


@pytest.fixture
def token_and_raw(tenant: Tenant, agent: Agent) -> tuple[RuntimeToken, str]:
    return runtime_token_create(
        actor=ACTOR,
        tenant=tenant,
        environment=tenant.environments.get(slug="production"),
        name="fleet",
    )


@pytest.fixture
def approver(tenant: Tenant):  # type: ignore[no-untyped-def]
    return make_user(Role.APPROVER, tenant, username="alice-approver")


@pytest.fixture
def approver2(tenant: Tenant):  # type: ignore[no-untyped-def]
    return make_user(Role.APPROVER, tenant, username="bob-approver")


@pytest.fixture
def refunds(tenant: Tenant, approver, approver2) -> ApprovalQueue:  # type: ignore[no-untyped-def]
    return queue_create(
        actor=ACTOR,
        tenant=tenant,
        data={
            "name": "Refunds",
            "match_tools": ["issue_refund"],
            "timeout_s": 3600,
            "sla_s": 600,
            "approvers": [approver, approver2],
        },
    )


class Runtime:
    """The runtime API over HTTP with a runtime token."""

    def __init__(self, base: str, raw: str) -> None:
        self.base, self.raw = base, raw

    def post(self, path: str, data: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.raw}"}
        if isinstance(data, bytes):
            return requests.post(self.base + path, data=data, headers=headers, timeout=10)
        return requests.post(self.base + path, json=data, headers=headers, timeout=10)

    def get(self, path: str, timeout: float = 10) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.raw}"}
        return requests.get(self.base + path, headers=headers, timeout=timeout)


@pytest.fixture
def runtime(asgi_server: str, token_and_raw) -> Runtime:  # type: ignore[no-untyped-def]
    return Runtime(asgi_server, token_and_raw[1])
