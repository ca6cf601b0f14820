"""The diff of a hand-made pair of bundles names exactly what changed."""

from __future__ import annotations

import pytest

from apps.audit.services import SystemActor
from apps.bundles.diff import FieldChange, LineRow, RuleRow, bundle_diff, line_rows
from apps.bundles.services import bundle_version_push
from apps.tenancy.models import Agent

from ..conftest import api_as
from .conftest import as_yaml

OLD = {
    "model": {"provider": "openai", "name": "gpt-4o-mini", "parameters": {"temperature": 0.2}},
    "prompts": {
        "system": {"role": "system", "template": "Line one\nLine two\nLine three\n"},
        "goodbye": {"role": "assistant", "template": "Bye."},
    },
    "tools": [
        {
            "name": "lookup",
            "description": "Find.",
            "risk": "read",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
        {
            "name": "refund",
            "description": "Pay back.",
            "risk": "write",
            "parameters": {
                "type": "object",
                "properties": {"amount": {"type": "number", "maximum": 100}},
            },
        },
        {
            "name": "delete_account",
            "description": "Gone.",
            "risk": "critical",
            "requires_approval": True,
            "parameters": {"type": "object"},
        },
    ],
    "policies": {
        "limits": {
            "max_steps": 8,
            "max_tool_calls": 6,
            "max_total_tokens": 1000,
            "max_cost_usd": 0.5,
            "max_retries_per_tool": 1,
        },
        "tool_rules": [{"tool": "lookup", "action": "allow"}, {"tool": "*", "action": "ask"}],
        "output": {"redact": ["email"]},
    },
    "retrieval": {
        "index": "kb",
        "embedding_model": "e1",
        "chunking": {"strategy": "fixed", "size": 500},
    },
}

NEW = {
    "model": {"provider": "openai", "name": "gpt-4o-mini", "parameters": {"temperature": 0.7}},
    "prompts": {
        "system": {
            "role": "system",
            "template": "Line one\nLine 2\nLine three\nLine four\n",
            "description": "now described",
        },
        "hello": {"role": "assistant", "template": "Hi."},
    },
    "tools": [
        {
            "name": "lookup",
            "description": "Find.",
            "risk": "read",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
        {
            "name": "refund",
            "description": "Pay back.",
            "risk": "critical",
            "requires_approval": True,
            "parameters": {
                "type": "object",
                "properties": {"amount": {"type": "number", "maximum": 500}},
            },
        },
        {
            "name": "send_email",
            "description": "Mail.",
            "risk": "write",
            "parameters": {"type": "object"},
        },
    ],
    "policies": {
        "limits": {
            "max_steps": 8,
            "max_tool_calls": 10,
            "max_total_tokens": 1000,
            "max_cost_usd": 0.5,
            "max_retries_per_tool": 1,
        },
        "tool_rules": [
            {"tool": "lookup", "action": "allow"},
            {"tool": "refund", "when": {"arg": "amount", "op": ">", "value": 100}, "action": "ask"},
            {"tool": "*", "action": "ask"},
        ],
        "output": {"redact": ["email", "phone"]},
    },
}


def test_bundle_diff__hand_made_pair__names_every_change() -> None:
    diff = bundle_diff(OLD, NEW)

    assert not diff.identical
    prompts = {p.name: p for p in diff.prompts}
    assert set(prompts) == {"system", "goodbye", "hello"}
    assert prompts["goodbye"].kind == "removed" and prompts["hello"].kind == "added"
    assert prompts["system"].kind == "changed"
    assert prompts["system"].lines == [
        LineRow("equal", 1, "Line one", 1, "Line one"),
        LineRow("changed", 2, "Line two", 2, "Line 2"),
        LineRow("equal", 3, "Line three", 3, "Line three"),
        LineRow("added", None, None, 4, "Line four"),
    ]
    assert prompts["system"].fields == [FieldChange("/description", "added", None, "now described")]

    tools = {t.name: t for t in diff.tools}
    assert {name: t.kind for name, t in tools.items()} == {
        "delete_account": "removed",
        "send_email": "added",
        "refund": "changed",
    }
    assert tools["refund"].fields == [
        FieldChange("/parameters/properties/amount/maximum", "changed", 100, 500),
        FieldChange("/requires_approval", "added", None, True),
        FieldChange("/risk", "changed", "write", "critical"),
    ]

    assert diff.limits == [FieldChange("/max_tool_calls", "changed", 6, 10)]
    assert diff.rules == [
        RuleRow("equal", 1, "allow lookup", 1, "allow lookup"),
        RuleRow("added", None, None, 2, "ask a human before refund when amount > 100"),
        RuleRow("equal", 2, "ask a human before *", 3, "ask a human before *"),
    ]
    assert diff.rules_changed
    assert diff.policies == [
        FieldChange("/output/redact", "changed", ["email"], ["email", "phone"])
    ]
    assert diff.model == [FieldChange("/parameters/temperature", "changed", 0.2, 0.7)]
    assert {(c.path, c.kind) for c in diff.retrieval} == {
        ("/index", "removed"),
        ("/embedding_model", "removed"),
        ("/chunking/strategy", "removed"),
        ("/chunking/size", "removed"),
    }
    assert diff.memory == [] and diff.other == []


def test_bundle_diff__same_content__identical_and_empty() -> None:
    diff = bundle_diff(OLD, OLD)
    assert diff.identical
    assert diff.prompts == diff.tools == diff.limits == diff.policies == diff.model == []
    assert not diff.rules_changed


def test_bundle_diff__rule_moved__shows_as_removed_and_added() -> None:
    reordered = {
        **OLD,
        "policies": {
            **OLD["policies"],
            "tool_rules": list(reversed(OLD["policies"]["tool_rules"])),
        },
    }
    kinds = [row.kind for row in bundle_diff(OLD, reordered).rules]
    assert "equal" in kinds and ("added" in kinds or "changed" in kinds)


def test_line_rows__replace_of_unequal_length__pairs_then_removes() -> None:
    assert line_rows("a\nb\nc", "a\nX") == [
        LineRow("equal", 1, "a", 1, "a"),
        LineRow("changed", 2, "b", 2, "X"),
        LineRow("removed", 3, "c", None, None),
    ]


@pytest.mark.django_db
def test_diff_api_and_page__two_versions__show_the_changes(viewer, agent: Agent, client) -> None:  # type: ignore[no-untyped-def]
    for content, message in ((OLD, "old"), (NEW, "new")):
        bundle_version_push(
            actor=SystemActor("system:test"), agent=agent, source=as_yaml(content), message=message
        )

    response = api_as(viewer).get(f"/api/v1/agents/{agent.pk}/bundles/diff/?from=1&to=2")
    assert response.status_code == 200
    body = response.json()
    assert body["from"]["number"] == 1 and body["to"]["number"] == 2
    assert {t["name"]: t["kind"] for t in body["diff"]["tools"]}["refund"] == "changed"
    assert body["diff"]["limits"] == [
        {"path": "/max_tool_calls", "kind": "changed", "before": 6, "after": 10}
    ]

    client.force_login(viewer)
    page = client.get(f"/bundles/agents/{agent.pk}/diff/?from_version=1&to_version=2")
    assert page.status_code == 200
    html = page.content.decode()
    assert (
        "Line 2" in html
        and "send_email" in html
        and "/parameters/properties/amount/maximum" in html
    )
    assert "ask a human before refund when amount &gt; 100" in html


@pytest.mark.django_db
def test_diff_api__bad_or_unknown_versions__400_or_404(viewer, agent: Agent) -> None:  # type: ignore[no-untyped-def]
    bundle_version_push(
        actor=SystemActor("system:test"), agent=agent, source=as_yaml(OLD), message="one"
    )
    client = api_as(viewer)
    response = client.get(f"/api/v1/agents/{agent.pk}/bundles/diff/?from=one&to=1")
    assert response.status_code == 400 and "from" in response.json()["errors"]
    assert client.get(f"/api/v1/agents/{agent.pk}/bundles/diff/?from=1&to=9").status_code == 404
