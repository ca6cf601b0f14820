"""Every incident becomes a test: a request record (or a whole session) as an evaluation case,
YAML, for the team's evaluation harness (docs/ci.md, "Cases from production").

The file is one suite of cases::

    suite: incidents
    cases:
      - name: support-bot-req-42
        input: ""                  # the user's message, from the trace
        tools: []                  # [{name, arguments}] the agent called, from the trace
        outcome:
          observed: error          # what happened (the record's outcome)
          error_code: timeout
          expected: success        # what should have happened (the operator's choice)
        note: "should have answered from the FAQ"
        source: {request_id, session_id, agent, environment, version_digest, variant,
                 started_at, model, latency_ms, steps, tool_calls, tool_failures, tokens_in,
                 tokens_out, cost_usd, trace_id, trace_url}

Records hold counts, not content (the prompt and tool arguments stay in the team's tracing
system), so ``input`` and the tools' ``arguments`` come from the operator's form or stay empty
for the harness's author to fill from the trace the case links to. Written with ruamel.yaml
(YAML 1.2: ``no`` stays a string); costs as decimal strings, times as RFC 3339 strings.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

SUITE = "incidents"


@dataclass(frozen=True)
class CaseNotes:
    """What the operator adds: the ``input`` (user message), ``expected`` outcome (one of the
    record outcomes, or "" to leave open), ``note`` (what should have happened) and the
    tools with arguments, as ``[{"name": str, "arguments": dict}]``."""

    input: str = ""
    expected: str = ""
    note: str = ""
    tools: tuple[dict[str, Any], ...] = ()


def _case(
    record: Any, *, agent_slug: str, environment_slug: str, trace_url: str | None, notes: CaseNotes
) -> dict[str, Any]:
    outcome: dict[str, Any] = {"observed": record.outcome}
    if record.error_code:
        outcome["error_code"] = record.error_code
    outcome["expected"] = notes.expected
    source = {
        "request_id": record.request_id,
        "session_id": record.session_id,
        "agent": agent_slug,
        "environment": environment_slug,
        "version_digest": record.version_digest,
        "variant": record.variant,
        "started_at": record.started_at.isoformat().replace("+00:00", "Z"),
        "model": record.model,
        "latency_ms": record.latency_ms,
        "steps": record.steps,
        "tool_calls": record.tool_calls,
        "tool_failures": record.tool_failures,
        "tokens_in": record.tokens_in,
        "tokens_out": record.tokens_out,
        "cost_usd": format(record.cost_usd.normalize(), "f"),
        "trace_id": record.trace_id,
        "trace_url": trace_url or "",
    }
    return {
        "name": f"{agent_slug}-{record.request_id}",
        "input": notes.input,
        "tools": [dict(tool) for tool in notes.tools],
        "outcome": outcome,
        "note": notes.note,
        "source": source,
    }


def evaluation_cases_yaml(
    records: Sequence[Any],
    *,
    agent_slug: str,
    environment_slug: str,
    trace_urls: Sequence[str | None],
    notes: CaseNotes,
    title: str,
) -> str:
    """The YAML document (a ``suite`` with one case per record, in the given order) for
    ``records`` (``RequestRecord`` rows of one agent and environment; ``trace_urls`` beside
    them). ``notes`` apply to every case; ``title`` heads the file as a comment."""
    document = CommentedMap()
    document["suite"] = SUITE
    document["cases"] = [
        _case(
            r, agent_slug=agent_slug, environment_slug=environment_slug, trace_url=url, notes=notes
        )
        for r, url in zip(records, trace_urls, strict=True)
    ]
    document.yaml_set_start_comment(
        f"{title}\nFill `input` and the tools' arguments from the trace (source.trace_url)\n"
        "where they are empty; `outcome.expected` is what should have happened."
    )
    yaml = YAML()  # round-trip: keeps the comment; YAML 1.2
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()
