"""Where an audit event's target lives in the UI: a link per target type, or none.

The audit app sits below every app it records (DESIGN.md layers), so it names their models
and pages by string — an app label and a URL name — never by import. ``TARGET_PAGES`` is the
one table: each target type the services record (``audit_record``: a model's
``_meta.label_lower``, or the explicit ``target_type`` of a few) maps to the model that holds
the row and a function from that row to its page. A target with no page of its own (a signing
key) is listed with ``None``; a target whose row is gone (deleted since) gets no link: the
audit log shows the label it recorded, as plain text.

Links are built for a page of events at once (:func:`target_links`): one query per target
type on the page, whatever the number of events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.db.models import Model
from django.urls import reverse
from django.utils.module_loading import import_string

from apps.core.authz import AnyUser, page_permission, user_may
from apps.core.input_guards import is_digits

from .models import AuditEvent

Page = Callable[[Any], str]


@dataclass(frozen=True)
class TargetPage:
    """``model``: the app label and model name of the row (``"flags.Flag"``); ``page``: the
    URL of the row's page, or None when the target type has no page of its own; a page every
    role reads where there is one (an edit form only links where nothing else shows the row);
    ``visible``: the dotted path of the owning app's ``fn(user) -> QuerySet`` of the rows a
    reader may open, where that is narrower than their tenants (an Approver's queues)."""

    model: str
    page: Page | None
    related: tuple[str, ...] = ()
    visible: str | None = None


def _url(name: str, *args: Any, anchor: str = "") -> str:
    return reverse(name, args=args) + (f"#{anchor}" if anchor else "")


TARGET_PAGES: dict[str, TargetPage] = {
    "auth.user": TargetPage("auth.User", lambda u: _url("accounts:user_edit", u.pk)),
    "accounts.runtimetoken": TargetPage(
        "accounts.RuntimeToken",
        lambda t: _url("runtimes:overview", anchor=f"runtime-token-{t.pk}"),
    ),
    "tenancy.tenant": TargetPage("tenancy.Tenant", lambda t: _url("tenancy:tenant_detail", t.slug)),
    "tenancy.agent": TargetPage("tenancy.Agent", lambda a: _url("tenancy:agent_detail", a.pk)),
    # read pages, never an edit page a role that reads the audit log may not open
    "tenancy.environment": TargetPage(
        "tenancy.Environment",
        lambda e: _url("tenancy:tenant_detail", e.tenant.slug),
        related=("tenant",),
    ),
    "bundles.bundleversion": TargetPage(
        "bundles.BundleVersion",
        lambda v: _url("bundles:version_detail", v.agent_id, v.number),
    ),
    "bundles.evaluation": TargetPage(
        "bundles.Evaluation",
        lambda e: _url("bundles:version_detail", e.version.agent_id, e.version.number),
        related=("version",),
    ),
    "bundles.promotiongate": TargetPage(
        "bundles.PromotionGate", lambda g: _url("bundles:gate_list")
    ),
    "bundles.signingkey": TargetPage("bundles.SigningKey", None),
    "flags.flag": TargetPage("flags.Flag", lambda f: _url("flags:flag_detail", f.pk)),
    "flags.segment": TargetPage(
        # segments are listed with the flags of their environment
        "flags.Segment",
        lambda s: f"{_url('flags:flag_list')}?environment={s.environment_id}",
    ),
    "flags.killswitch": TargetPage(
        "flags.KillSwitch",
        lambda k: _url("flags:kill_switch_list", anchor=f"kill-switch-{k.pk}"),
    ),
    "rollouts.deployment": TargetPage(
        "rollouts.Deployment", lambda d: _url("tenancy:agent_detail", d.agent_id)
    ),
    "rollouts.rollout": TargetPage(
        "rollouts.Rollout", lambda r: _url("rollouts:rollout_detail", r.pk)
    ),
    "rollouts.rolloutplan": TargetPage(
        "rollouts.RolloutPlan", lambda p: _url("rollouts:plan_edit", p.environment_id)
    ),
    "budgets.budget": TargetPage("budgets.Budget", lambda b: _url("budgets:detail", b.pk)),
    "approvals.approvalrequest": TargetPage(
        # the inbox with the request open (its own URL answers a browser with this redirect)
        "approvals.ApprovalRequest",
        lambda r: f"{_url('approvals:inbox')}?request={r.pk}",
        visible="apps.approvals.selectors.requests_visible",
    ),
    "approvals.approvalqueue": TargetPage(
        "approvals.ApprovalQueue", lambda q: _url("approvals:queue_list")
    ),
    "alerts.alert": TargetPage("alerts.Alert", lambda a: _url("alerts:list")),
    "alerts.alertchannel": TargetPage("alerts.AlertChannel", lambda c: _url("alerts:list")),
    "reviews.reviewgrade": TargetPage(
        "reviews.ReviewGrade", lambda g: _url("reviews:queue", g.agent_id)
    ),
    "runtimes.runtimeinstance": TargetPage(
        "runtimes.RuntimeInstance", lambda i: _url("runtimes:overview")
    ),
}


def _model(label: str) -> type[Model] | None:
    try:
        return apps.get_model(label)
    except LookupError:  # an app not installed in this deployment
        return None


def target_links(events: Iterable[AuditEvent], *, user: AnyUser | None = None) -> dict[int, str]:
    """Event id -> URL of its target's page, for the events whose target has a page and
    still exists and, given ``user`` (the reader), that page is one the reader's role may
    open (``apps.core.authz.page_permission``: a Viewer is not sent to an edit page that
    answers 403); the others are left out (shown as plain text). One query per target
    type."""
    events = list(events)
    wanted: dict[str, set[str]] = defaultdict(set)
    for event in events:
        page = TARGET_PAGES.get(event.target_type)
        if page is None or page.page is None or not event.target_id:
            continue
        wanted[event.target_type].add(event.target_id)
    rows: dict[str, dict[str, Any]] = {}
    for target_type, ids in wanted.items():
        spec = TARGET_PAGES[target_type]
        model = _model(spec.model)
        if model is None:
            continue
        pks = [i for i in ids if is_digits(i)]
        found = model._default_manager.select_related(*spec.related).filter(pk__in=pks)
        if spec.visible and user is not None:
            found = found.filter(pk__in=import_string(spec.visible)(user).values("pk"))
        rows[target_type] = {str(row.pk): row for row in found}
    links: dict[int, str] = {}
    for event in events:
        row = rows.get(event.target_type, {}).get(event.target_id)
        page = TARGET_PAGES.get(event.target_type)
        if row is not None and page is not None and page.page is not None:
            url = page.page(row)
            if user is None or _may_open(user, url):
                links[event.pk] = url
    return links


def _may_open(user: AnyUser, url: str) -> bool:
    permission = page_permission(urlsplit(url).path)
    return permission is None or user_may(user, permission)


def target_link(event: AuditEvent, *, user: AnyUser | None = None) -> str | None:
    """The URL of one event's target page, or None (no page, the target is gone, or a page
    ``user`` may not open)."""
    return target_links([event], user=user).get(event.pk)
