"""The Approvals pages: the inbox (counts per queue, filters, the list by risk and age with
the waiting badge against the queue's SLA, the detail pane, approve / reject with a comment,
bulk decisions for low risk, keyboard shortcuts in ``static/js/approvals.js``, the list
polled every few seconds), queue health (plotly charts and time to decision per tool), and
the queues (list, create, edit, delete) for Operators and Admins.

Every read goes through ``selectors`` (an Approver sees only its queues; another queue's
request is a 404), every change through ``services``, which authorise again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.core.authz import requires
from apps.core.charts import figure_html
from apps.core.ui import (
    Confirmation,
    confirm_with_reason,
    local_url,
    query_choice,
    rebase_if_stale,
)
from apps.tenancy.context_processors import current_tenant_for
from apps.tenancy.models import Tenant
from apps.tenancy.selectors import agent_list_for_user, environment_list_for_user

from . import charts, display, selectors, services
from .forms import BulkDecisionForm, DecisionForm, InboxFilterForm, QueueForm
from .models import BULK_RISKS, RISK_LABELS, ApprovalQueue, ApprovalRequest, Status

VIEW = "approvals.view_approvalrequest"
VIEW_QUEUES = "approvals.view_approvalqueue"
DECIDE = services.DECIDE
LIST_LIMIT = 200
POLL_SECONDS = 4
HEALTH_HOURS = (6, 24, 72, 168)


def _digits(value: str | None) -> int | None:
    # ASCII digits only: "²" is a digit to ``isdigit`` but not to ``int``
    if value and value.isascii() and value.isdigit() and len(value) < 12:
        return int(value)
    return None


def _groups_once(request: HttpRequest) -> None:
    """The selectors check the user's role (its groups) many times per page; the inbox and its
    list, polled every few seconds by every open inbox, read the groups once."""
    if isinstance(request.user, Model):  # signed in (AnonymousUser is no model)
        prefetch_related_objects([request.user], "groups")


def _request_or_404(request: HttpRequest, pk: int) -> ApprovalRequest:
    found = selectors.request_get(request.user, pk)
    if found is None:
        raise Http404("No such approval request in your queues.")
    return found


# --------------------------------------------------------------------------- the inbox


@dataclass(frozen=True)
class Row:
    """One line of the inbox's list."""

    request: ApprovalRequest
    waiting: display.Waiting
    preview: str
    risk_class: str
    status_class: str
    status_words: str
    decided_by: str
    bulk: bool  # may be ticked for a bulk decision


def _filter_form(request: HttpRequest, tenant: Tenant | None, *, tools: bool) -> InboxFilterForm:
    tenant_id = tenant.pk if tenant is not None else None
    return InboxFilterForm(
        request.GET,
        queues=selectors.queues_visible(request.user, tenant_id),
        agents=agent_list_for_user(user=request.user, tenant=tenant) if tenant else [],
        environments=environment_list_for_user(user=request.user, tenant=tenant) if tenant else [],
        # the tool field's suggestions (a DISTINCT over every request of the tenant) are
        # shown by the page only, not by the list every open inbox polls
        tools=selectors.inbox_tools(request.user, tenant_id) if tools else [],
    )


def _listing(
    request: HttpRequest, tenant: Tenant | None, now: datetime, *, tools: bool = True
) -> dict[str, Any]:
    """The polled part of the inbox: counts per queue and the list (``tools``: with the
    tool filter's suggestions, for the whole page)."""
    form = _filter_form(request, tenant, tools=tools)
    filters = form.filters(tenant)
    found = list(selectors.inbox(request.user, filters, now=now)[: LIST_LIMIT + 1])
    decidable = set(selectors.queues_decidable(request.user).values_list("pk", flat=True))
    rows = [
        Row(
            request=r,
            waiting=display.waiting(r, now),
            preview=display.preview(r.arguments),
            risk_class=display.RISK_CLASS.get(r.risk, "bad"),
            status_class=display.STATUS_CLASS.get(Status(r.status), "neutral"),
            status_words=display.STATUS_WORDS.get(Status(r.status), r.status),
            decided_by=display.decided_by(r),
            bulk=(
                r.status == Status.PENDING
                and r.risk in BULK_RISKS
                and r.approvals_required == 1
                and r.queue_id in decidable
            ),
        )
        for r in found[:LIST_LIMIT]
    ]
    counts = selectors.queue_counts(
        request.user, tenant_id=tenant.pk if tenant is not None else None, now=now
    )
    query = request.GET.copy()
    query.pop("request", None)
    query.pop("queue", None)
    return {
        "filter_form": form,
        "filters": filters,
        "rows": rows,
        "more": len(found) > LIST_LIMIT,
        "counts": counts,
        "total_waiting": sum(c.waiting for c in counts),
        "total_over": sum(c.over_sla for c in counts),
        "may_bulk": any(row.bulk for row in rows),
        "may_decide_any": any(c.may_decide for c in counts),
        "queue_query": query.urlencode(),
        "status": filters.status,
        "now": now,
        "poll_seconds": POLL_SECONDS,
    }


def _decided_words(request: ApprovalRequest, voted: str) -> str:
    if request.status == Status.PENDING:
        return (
            f"You approved #{request.pk} ({request.tool}): it needs another approver "
            f"({request.approvals} of {request.approvals_required})."
        )
    verb = "Approved" if voted == "approve" else "Rejected"
    return f"{verb} #{request.pk} ({request.tool})."


def _pane(
    request: HttpRequest,
    found: ApprovalRequest,
    *,
    form: DecisionForm | None = None,
    notice: str = "",
    done: str = "",
) -> dict[str, Any]:
    """The detail pane's context for a request the user may read."""
    detail = selectors.request_detail(request.user, found)
    now = timezone.now()
    mine = next((vote for vote in detail.votes if vote.user_id == request.user.pk), None)
    return {
        "r": found,
        "detail": detail,
        "waiting": display.waiting(found, now),
        "risk_class": display.RISK_CLASS.get(found.risk, "bad"),
        "status_class": display.STATUS_CLASS.get(Status(found.status), "neutral"),
        "status_words": display.STATUS_WORDS.get(Status(found.status), found.status),
        "argument_rows": display.argument_rows(found.arguments, detail.changes, found.redacted),
        "changes": display.change_lines(found.arguments, detail.changes),
        "recent": [
            {
                "r": r,
                "css": display.STATUS_CLASS.get(Status(r.status), "neutral"),
                "words": display.STATUS_WORDS.get(Status(r.status), r.status),
                "by": display.decided_by(r),
            }
            for r in detail.recent
        ],
        "decided_by": display.decided_by(found),
        "my_vote": mine,
        "can_decide": detail.may_decide and mine is None,
        "form": form or DecisionForm(),
        "notice": notice,
        "done": done,
        "zone": display.zone_of(found.tenant.time_zone),
        "expires_in": display.duration((found.expires_at - now).total_seconds()),
        "waited": display.duration(((found.decided_at or now) - found.created_at).total_seconds()),
        "sla": display.duration(found.queue.sla_s),
    }


def _inbox_page(
    request: HttpRequest,
    *,
    selected: ApprovalRequest | None = None,
    pane: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    _groups_once(request)
    tenant = current_tenant_for(request)
    now = timezone.now()
    context = _listing(request, tenant, now)
    if selected is None and pane is None:
        wanted = _digits(request.GET.get("request"))
        if request.GET.get("request") is not None and wanted is None:
            raise Http404("No such approval request in your queues.")
        if wanted is not None:
            selected = _request_or_404(request, wanted)
        elif context["rows"]:
            selected = context["rows"][0].request
    if pane is None and selected is not None:
        pane = _pane(request, selected)
    query = request.GET.copy()
    query.pop("request", None)
    return render(
        request,
        "approvals/inbox.html",
        {
            **context,
            "tenant": tenant,
            "pane_html": render_to_string("approvals/_detail.html", pane, request) if pane else "",
            "selected_id": pane["r"].pk if pane else None,
            "list_url": f"{reverse('approvals:list')}?{query.urlencode()}",
            "here": request.get_full_path(),
        },
        status=status,
    )


@login_required
@requires(VIEW, "Your role does not allow viewing approval requests.")
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    """The inbox of the current tenant: ``?request=<id>`` selects a request (alerts link
    there); ``queue``, ``agent``, ``tool``, ``risk``, ``age`` (seconds), ``status`` (waiting,
    decided, all) filter the list."""
    return _inbox_page(request)


@login_required
@requires(VIEW, "Your role does not allow viewing approval requests.")
@require_GET
def inbox_list(request: HttpRequest) -> HttpResponse:
    """The inbox's polled fragment (counts per queue and the list), with the inbox's
    filters; ``static/js/approvals.js`` merges it without touching what holds the focus."""
    _groups_once(request)
    tenant = current_tenant_for(request)
    return render(
        request, "approvals/_list.html", _listing(request, tenant, timezone.now(), tools=False)
    )


@login_required
@requires(VIEW, "Your role does not allow viewing approval requests.")
@require_GET
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The detail pane of one request (an htmx fragment); a browser asking for the page gets
    the inbox with it selected."""
    _groups_once(request)
    found = _request_or_404(request, pk)
    if request.headers.get("HX-Request") != "true":
        return redirect(f"{reverse('approvals:inbox')}?request={found.pk}")
    return render(request, "approvals/_detail.html", _pane(request, found))


@login_required
@requires(DECIDE, "Your role does not allow deciding approval requests.")
@require_POST
def request_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or reject one request with a comment (a rejection needs one). Refusals are
    shown in the pane: field errors (400), already decided — naming who decided, when (409),
    not yours to decide (403)."""
    found = _request_or_404(request, pk)
    form = DecisionForm(request.POST)
    htmx = request.headers.get("HX-Request") == "true"
    status, notice = 400, ""
    if form.is_valid():
        choice = form.cleaned_data["choice"]
        try:
            decided = services.approval_decide(
                actor=request.user,
                request=found,
                choice=choice,
                comment=form.cleaned_data["comment"],
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        except services.AlreadyDecided as exc:
            status, notice = 409, str(exc)
        except PermissionDenied as exc:
            status, notice = 403, str(exc)
        else:
            words = _decided_words(decided, choice)
            if not htmx:
                messages.success(request, words)
                return redirect(
                    local_url(request, request.POST.get("next"), reverse("approvals:inbox"))
                )
            fresh = _request_or_404(request, pk)
            return render(request, "approvals/_detail.html", _pane(request, fresh, done=words))
    fresh = _request_or_404(request, pk)  # it may have been decided meanwhile
    pane = _pane(request, fresh, form=form, notice=notice)
    if htmx:
        return render(request, "approvals/_detail.html", pane, status=status)
    return _inbox_page(request, selected=fresh, pane=pane, status=status)


@login_required
@requires(DECIDE, "Your role does not allow deciding approval requests.")
@require_POST
def bulk_decide(request: HttpRequest) -> HttpResponse:
    """Approve or reject the ticked low-risk requests at once; each one refused (not low
    risk, decided meanwhile, not yours) is named with the reason, the others are decided."""
    back = local_url(request, request.POST.get("next"), reverse("approvals:inbox"))
    form = BulkDecisionForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return redirect(back)
    ids: list[int] = form.cleaned_data["ids"]
    choice: str = form.cleaned_data["choice"]
    # Scoped: an id the user may not see is "not found", never decided.
    found = list(selectors.requests_visible(request.user).filter(pk__in=ids).order_by("id"))
    try:
        result = services.approval_decide_bulk(
            actor=request.user, requests=found, choice=choice, comment=form.cleaned_data["comment"]
        )
    except ValidationError as exc:  # a comment the form let through (a control character)
        for problems in exc.message_dict.values():
            for problem in problems:
                messages.error(request, problem)
        return redirect(back)
    verb = "approved" if choice == "approve" else "rejected"
    if result.decided:
        numbers = ", ".join(f"#{pk}" for pk in result.decided)
        count = len(result.decided)
        messages.success(
            request, f"{verb.capitalize()} {count} request{'s' if count != 1 else ''}: {numbers}."
        )
    for pk, why in sorted(result.refused.items()):
        messages.error(request, f"#{pk} not {verb}: {why}")
    for pk in sorted(set(ids) - {r.pk for r in found}):
        messages.error(request, f"#{pk} not {verb}: no such request in your queues.")
    return redirect(back)


# --------------------------------------------------------------------------- queue health


@login_required
@requires(VIEW, "Your role does not allow viewing approval requests.")
@require_GET
def health(request: HttpRequest) -> HttpResponse:
    """Queue health of the current tenant (one queue with ``?queue=<id>``) over ``?hours=``
    (6, 24, 72 or 168): depth, arrivals, expiries and escalations per hour, time to decision
    p50 / p95 and the approval rate per tool."""
    tenant = current_tenant_for(request)
    tenant_id = tenant.pk if tenant is not None else None
    queues = list(selectors.queues_visible(request.user, tenant_id))
    # ?queue=<id> that is not one of the user's is a 404, never every queue's numbers.
    chosen = query_choice(request, "queue", {str(q.pk): q for q in queues}, None)
    hours = _digits(request.GET.get("hours")) or 24
    hours = hours if hours in HEALTH_HOURS else 24
    queue_ids = [chosen.pk] if chosen else [q.pk for q in queues] if tenant else None
    numbers = selectors.queue_health(request.user, queue_ids=queue_ids, hours=hours)
    zone = display.zone_of(tenant.time_zone if tenant is not None else "UTC")
    busy = any(numbers.opened) or any(numbers.depth)
    return render(
        request,
        "approvals/health.html",
        {
            "tenant": tenant,
            "queues": queues,
            "chosen": chosen,
            "hours": hours,
            "hour_choices": HEALTH_HOURS,
            "health": numbers,
            "zone": zone,
            "p50": display.duration(numbers.p50_s),
            "p95": display.duration(numbers.p95_s),
            "opened_total": sum(numbers.opened),
            "expired_total": sum(numbers.expired),
            "escalated_total": sum(numbers.escalated),
            "tools": [
                {
                    **row,
                    "rate": (
                        f"{row['approval_rate'] * 100:.0f}%"
                        if row["approval_rate"] is not None
                        else "—"
                    ),
                    "p50": display.duration(row["p50_s"]),
                    "p95": display.duration(row["p95_s"]),
                }
                for row in numbers.tools
            ],
            "depth_chart": figure_html(
                charts.depth(hours=numbers.hours, waiting=numbers.depth, zone=zone),
                label="Requests waiting at the end of each hour",
            )
            if busy
            else None,
            "opened_chart": figure_html(
                charts.opened(hours=numbers.hours, counts=numbers.opened, zone=zone),
                label="Requests opened per hour",
            )
            if busy
            else None,
            "expired_chart": figure_html(
                charts.expired_escalated(
                    hours=numbers.hours,
                    expired=numbers.expired,
                    escalated=numbers.escalated,
                    zone=zone,
                ),
                label="Requests expired and escalated per hour",
            )
            if busy
            else None,
        },
    )


# --------------------------------------------------------------------------- queues


def _queue_or_404(request: HttpRequest, pk: int) -> ApprovalQueue:
    found = selectors.queues_visible(request.user).filter(pk=pk).first()
    if found is None:
        raise Http404("No such approval queue.")
    return found


def _rules(queue: ApprovalQueue) -> str:
    parts = []
    if queue.match_agents:
        parts.append("agents " + ", ".join(queue.match_agents))
    if queue.match_tools:
        parts.append("tools " + ", ".join(queue.match_tools))
    if queue.match_risks:
        parts.append("risk " + ", ".join(RISK_LABELS.get(r, r) for r in queue.match_risks))
    if queue.is_default:
        return "everything no other queue takes"
    return "; ".join(parts) or "every request (no rule narrows it)"


@login_required
@requires(VIEW_QUEUES, "Your role does not allow viewing approval queues.")
@require_GET
def queue_list(request: HttpRequest) -> HttpResponse:
    """The current tenant's queues in routing order with their rules, timings and approvers."""
    tenant = current_tenant_for(request)
    tenant_id = tenant.pk if tenant is not None else None
    counts = {c.queue.pk: c for c in selectors.queue_counts(request.user, tenant_id=tenant_id)}
    rows = [
        {
            "queue": queue,
            "rules": _rules(queue),
            "approvers": [u.get_username() for u in services.queue_approvers(queue)],
            "count": counts.get(queue.pk),
            "timeout": display.duration(queue.timeout_s),
            "sla": display.duration(queue.sla_s),
            "escalate_after": display.duration(queue.escalate_after_s)
            if queue.escalate_after_s
            else "",
        }
        for queue in selectors.queues_visible(request.user, tenant_id)
    ]
    return render(request, "approvals/queue_list.html", {"rows": rows, "tenant": tenant})


def _queue_form(
    request: HttpRequest, tenant: Tenant, queue: ApprovalQueue | None = None, **kwargs: Any
) -> QueueForm:
    return QueueForm(
        request.POST or None,
        tenant=tenant,
        agents=agent_list_for_user(user=request.user, tenant=tenant),
        queues=selectors.queues_visible(request.user, tenant.pk),
        candidates=services.users_who_may_approve(tenant),
        queue=queue,
        **kwargs,
    )


def _save(form: QueueForm, act: Callable[[dict[str, Any]], ApprovalQueue]) -> ApprovalQueue | None:
    """Run the service on the form's definition; its refusals go next to the fields."""
    try:
        return act(form.definition())
    except ValidationError as exc:
        if not hasattr(exc, "error_dict"):
            form.add_error(None, exc)  # keeps the code ("stale" for a StaleVersion)
            return None
        for key, errors in exc.message_dict.items():
            form.add_error(key if key in form.fields else None, errors)
        return None


@login_required
@requires("approvals.add_approvalqueue", "Your role does not allow creating approval queues.")
def queue_create(request: HttpRequest) -> HttpResponse:
    tenant = current_tenant_for(request)
    if tenant is None:
        raise Http404("Choose or create a tenant first.")
    form = _queue_form(request, tenant)
    if request.method == "POST" and form.is_valid():
        created = _save(
            form,
            lambda data: services.queue_create(
                actor=request.user,
                tenant=tenant,
                data=data,
                reason=form.cleaned_data.get("reason") or "",
            ),
        )
        if created is not None:
            messages.success(request, f"Queue {created.name} created.")
            return redirect("approvals:queue_list")
    return render(
        request,
        "approvals/queue_form.html",
        {"form": form, "tenant": tenant, "title": f"New approval queue for {tenant.name}"},
    )


@login_required
@requires("approvals.change_approvalqueue", "Your role does not allow changing approval queues.")
def queue_edit(request: HttpRequest, pk: int) -> HttpResponse:
    queue = _queue_or_404(request, pk)
    form = _queue_form(
        request,
        queue.tenant,
        queue,
        initial=QueueForm.initial_of(queue, services.queue_approvers(queue)),
    )
    if request.method == "POST" and form.is_valid():
        saved = _save(
            form,
            lambda data: services.queue_update(
                actor=request.user,
                queue=queue,
                data=data,
                expected_version=form.cleaned_data.get("expected_version"),
                reason=form.cleaned_data.get("reason") or "",
            ),
        )
        if saved is not None:
            messages.success(request, f"Queue {saved.name} saved.")
            return redirect("approvals:queue_list")
        queue.refresh_from_db()
        rebase_if_stale(form, queue.version)
    return render(
        request,
        "approvals/queue_form.html",
        {
            "form": form,
            "tenant": queue.tenant,
            "queue": queue,
            "title": f"Edit approval queue {queue.name}",
        },
    )


@login_required
@requires("approvals.delete_approvalqueue", "Your role does not allow deleting approval queues.")
def queue_delete(request: HttpRequest, pk: int) -> HttpResponse:
    queue = _queue_or_404(request, pk)

    def act(reason: str, _version: int | None) -> bool:
        try:
            services.queue_delete(actor=request.user, queue=queue, reason=reason)
        except services.QueueInUse as exc:
            raise ValidationError(str(exc)) from None
        return True

    return confirm_with_reason(
        request,
        shown=Confirmation(
            title=f"Delete the queue {queue.name}?",
            effect=(
                f"Requests of {queue.tenant.name} stop routing to {queue.name}: new ones go to "
                "the next queue whose rules match, else to the default queue; its approver "
                "group goes, and queues escalating to it stop escalating."
            ),
            action_label="Delete queue",
        ),
        act=act,
        done_url="approvals:queue_list",
        done_message=f"Queue {queue.name} deleted.",
    )
