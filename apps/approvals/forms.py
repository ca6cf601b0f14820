"""The approvals forms: the inbox's filters, a decision, a bulk decision, and the queue form
(the fields of ``services.queue_validate`` in the operator's words)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.core.ui import ExpectedVersionField
from apps.tenancy.models import Agent, Environment, Tenant

from .models import RISK_LABELS, RISKS, ApprovalQueue, ApprovalVote, Status
from .selectors import DECIDED, InboxFilters

AGES = [
    ("", "any age"),
    ("300", "older than 5 min"),
    ("900", "older than 15 min"),
    ("3600", "older than 1 h"),
    ("14400", "older than 4 h"),
    ("86400", "older than 1 day"),
]
STATUSES = [(Status.PENDING.value, "waiting"), (DECIDED, "decided"), ("all", "all")]
RISK_CHOICES = [(risk, RISK_LABELS[risk]) for risk in RISKS]
MAX_BULK = 200


class InboxFilterForm(forms.Form):
    """The filters above the inbox's list (GET). Unknown values are ignored, not errors: a
    stale bookmark still opens the inbox."""

    queue = forms.ChoiceField(required=False)
    agent = forms.ChoiceField(required=False)
    environment = forms.ChoiceField(required=False)
    tool = forms.CharField(required=False, max_length=64)
    risk = forms.ChoiceField(required=False, choices=[("", "any risk"), *RISK_CHOICES])
    age = forms.ChoiceField(required=False, choices=AGES, label="Waiting")
    status = forms.ChoiceField(required=False, choices=STATUSES)

    def __init__(
        self,
        data: Any,
        *,
        queues: Iterable[ApprovalQueue],
        agents: Iterable[Agent],
        tools: Iterable[str],
        environments: Iterable[Environment] = (),
    ) -> None:
        super().__init__(data)
        self.fields["queue"].choices = [("", "every queue")] + [  # type: ignore[attr-defined]
            (str(queue.pk), queue.name) for queue in queues
        ]
        self.fields["agent"].choices = [("", "every agent")] + [  # type: ignore[attr-defined]
            (agent.slug, agent.slug) for agent in agents
        ]
        self.fields["environment"].choices = [("", "every environment")] + [  # type: ignore[attr-defined]
            (environment.slug, environment.name) for environment in environments
        ]
        self.tools = sorted(set(tools))
        self.fields["tool"].widget.attrs.update(
            {"list": "inbox-tools", "placeholder": "any tool", "autocomplete": "off"}
        )

    def _value(self, name: str) -> str:
        """The field's value when valid, else "" (ignored)."""
        value = self.data.get(name, "") if hasattr(self.data, "get") else ""
        field = self.fields[name]
        try:
            return str(field.clean(value) or "")
        except ValidationError:
            return ""

    def filters(self, tenant: Tenant | None) -> InboxFilters:
        """The selector's filters (``selectors.InboxFilters``) for ``tenant`` (None: every
        tenant of the user)."""
        queue = self._value("queue")
        age = self._value("age")
        status = self._value("status") or Status.PENDING.value
        return InboxFilters(
            queue=int(queue) if queue else None,
            agent=self._value("agent"),
            environment=self._value("environment"),
            tool=self._value("tool").strip(),
            risk=self._value("risk"),
            min_age_s=int(age) if age else None,
            status="" if status == "all" else status,
            tenant_id=tenant.pk if tenant is not None else None,
        )

    def active(self) -> bool:
        """Whether any filter narrows the list (beyond the status)."""
        return any(
            self._value(name) for name in ("queue", "agent", "environment", "tool", "risk", "age")
        )


class DecisionForm(forms.Form):
    """Approve or reject one request; a rejection needs a comment (the service says so)."""

    choice = forms.ChoiceField(choices=ApprovalVote.Choice.choices)
    comment = forms.CharField(
        required=False,
        max_length=2000,
        label="Comment",
        widget=forms.Textarea(
            attrs={
                "rows": 2,
                "id": "decision-comment",
                "placeholder": "Required to reject: the agent and its user read it.",
            }
        ),
    )


class BulkDecisionForm(forms.Form):
    """Decide the selected low-risk requests at once: ``ids`` (repeated), a choice, a comment
    (required to reject). Which ids the user may see is the view's business."""

    choice = forms.ChoiceField(choices=ApprovalVote.Choice.choices)
    comment = forms.CharField(required=False, max_length=2000)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        raw = self.data.getlist("ids") if hasattr(self.data, "getlist") else []
        ids = sorted(
            {
                int(value)
                for value in raw[:MAX_BULK]
                if isinstance(value, str)
                and value.isascii()
                and value.isdigit()
                and len(value) < 12
            }
        )
        if not ids:
            raise ValidationError("Select the requests to decide first (tick their boxes, or x).")
        data["ids"] = ids
        if (
            data.get("choice") == ApprovalVote.Choice.REJECT
            and not (data.get("comment") or "").strip()
        ):
            self.add_error("comment", "Say why they are rejected: the agents and users read it.")
        return data


def _seconds_field(
    label: str, help_text: str, *, required: bool = True, initial: int | None = None
) -> forms.IntegerField:
    return forms.IntegerField(label=label, help_text=help_text, required=required, initial=initial)


class QueueForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. Refunds")
    description = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
    match_agents = forms.MultipleChoiceField(
        label="Agents",
        required=False,
        help_text="Route requests of these agents here; none selected: every agent. "
        "Ctrl/⌘-click to select several.",
    )
    match_tools = forms.CharField(
        label="Tools",
        required=False,
        max_length=2000,
        help_text="Tool names or globs, separated by commas (issue_refund, send_*); empty: "
        "every tool.",
    )
    match_risks = forms.MultipleChoiceField(
        label="Risks",
        required=False,
        choices=RISK_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: any risk.",
    )
    position = forms.IntegerField(
        initial=100, help_text="Routing order: lower is tried first; the first match wins."
    )
    timeout_s = _seconds_field(
        "Timeout (seconds)",
        "A request nobody decided by then expires and the runtime denies the call (3600 = 1 hour).",
        initial=3600,
    )
    sla_s = _seconds_field(
        "SLA (seconds)",
        "The waiting time the inbox's badge compares with (900 = 15 minutes).",
        initial=900,
    )
    escalate_after_s = _seconds_field(
        "Escalate after (seconds)",
        "Move a request still waiting after this long to the queue below; empty: never.",
        required=False,
    )
    escalate_to = forms.ChoiceField(label="Escalate to", required=False)
    max_open_per_session = forms.IntegerField(
        label="Open requests per session",
        initial=5,
        help_text="An agent session with this many requests waiting here gets a refusal "
        "until one is decided.",
    )
    approvers = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="They decide this queue's requests (Admins decide in every queue).",
    )
    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
    )

    MULTI = ("match_risks", "approvers")

    def __init__(
        self,
        *args: Any,
        tenant: Tenant,
        agents: Iterable[Agent],
        queues: Iterable[ApprovalQueue],
        candidates: Iterable[Any],
        queue: ApprovalQueue | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        self.queues = {str(q.pk): q for q in queues if queue is None or q.pk != queue.pk}
        self.candidates = {str(user.pk): user for user in candidates}
        self.fields["match_agents"].choices = [  # type: ignore[attr-defined]
            (agent.slug, f"{agent.name} ({agent.slug})") for agent in agents
        ]
        self.fields["match_agents"].widget.attrs["size"] = 5
        self.fields["escalate_to"].choices = [("", "— never —")] + [  # type: ignore[attr-defined]
            (pk, q.name) for pk, q in self.queues.items()
        ]
        self.fields["approvers"].choices = [  # type: ignore[attr-defined]
            (pk, user.get_username()) for pk, user in self.candidates.items()
        ]
        if queue is not None:
            # The queue's version the form was filled from: saving is refused if it moved.
            self.fields["expected_version"] = ExpectedVersionField()

    @staticmethod
    def initial_of(queue: ApprovalQueue, approvers: Iterable[Any]) -> dict[str, Any]:
        """The form's values for an existing queue."""
        return {
            "name": queue.name,
            "description": queue.description,
            "match_agents": list(queue.match_agents),
            "match_tools": ", ".join(queue.match_tools),
            "match_risks": list(queue.match_risks),
            "position": queue.position,
            "timeout_s": queue.timeout_s,
            "sla_s": queue.sla_s,
            "escalate_after_s": queue.escalate_after_s,
            "escalate_to": str(queue.escalate_to_id) if queue.escalate_to_id else "",
            "max_open_per_session": queue.max_open_per_session,
            "approvers": [str(user.pk) for user in approvers],
            "expected_version": queue.version,
        }

    def definition(self) -> dict[str, Any]:
        """The service's input (``queue_validate``'s shape) from the cleaned data."""
        data = self.cleaned_data
        return {
            "name": data["name"],
            "description": data.get("description") or "",
            "position": data.get("position"),
            "match_agents": list(data.get("match_agents") or []),
            "match_tools": data.get("match_tools") or "",
            "match_risks": list(data.get("match_risks") or []),
            "timeout_s": data.get("timeout_s"),
            "sla_s": data.get("sla_s"),
            "escalate_after_s": data.get("escalate_after_s"),
            "escalate_to": self.queues.get(data.get("escalate_to") or ""),
            "max_open_per_session": data.get("max_open_per_session"),
            "approvers": [self.candidates[pk] for pk in data.get("approvers") or []],
        }
