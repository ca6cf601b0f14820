"""The operator's telemetry pages (docs/decisions/0022): the Telemetry page of an agent in an
environment (charts from rollups), the records explorer (filters, keyset pages, cost
outliers, trace links), a record's page, and "Export as evaluation case" for a record or a
session. All read-only; every one scoped to the user's tenants (another tenant's agent or
record is a 404) and gated by ``telemetry.view_requestrecord``."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict
from django.shortcuts import render

from apps.core.authz import requires
from apps.core.charts import figure_html
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import Agent, Environment

from . import charts, explorer
from .export import CaseNotes, evaluation_cases_yaml
from .forms import ExportForm, RecordFilterForm
from .models import RequestRecord

VIEW_PERMISSION = "telemetry.view_requestrecord"
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _agent(request: HttpRequest, pk: int) -> Agent:
    return tenancy_selectors.agent_get_for_user(user=request.user, pk=pk)


def _environment(request: HttpRequest, agent: Agent) -> tuple[Environment, list[Environment]]:
    """The environment ``?environment=<slug>`` names, else production (404 if unknown)."""
    return tenancy_selectors.environment_chosen(
        user=request.user, tenant=agent.tenant, slug=request.GET.get("environment", "")
    )


def _tz(agent: Agent) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(agent.tenant.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def _query(params: dict[str, Any]) -> str:
    query = QueryDict(mutable=True)
    for key, value in params.items():
        if value not in (None, "", False):
            query[key] = str(value)
    return query.urlencode()


@login_required
@requires(VIEW_PERMISSION)
def agent_telemetry(request: HttpRequest, pk: int) -> HttpResponse:
    """Request rate, error rate, p95 latency, cost per request and tokens of one agent in one
    environment, per (version, variant), over 1h/6h/24h/7d; from rollups only. Under htmx
    (its 60-second refresh) only the charts part."""
    agent = _agent(request, pk)
    environment, environments = _environment(request, agent)
    range_label = request.GET.get("range", "")
    if range_label not in explorer.RANGES:
        range_label = explorer.DEFAULT_RANGE
    tz = _tz(agent)
    start, end = explorer.time_range(range_label)
    series = explorer.chart_series(agent=agent, environment=environment, range_label=range_label)
    subject = f"{agent.slug} in {environment.name}"
    figures = [
        figure_html(figure, label=f"{key} chart of {subject}")
        for key, figure in charts.telemetry_figures(series, tz=tz, start=start, end=end)
    ]
    context = {
        "agent": agent,
        "environment": environment,
        "environments": environments,
        "range_label": range_label,
        "ranges": list(explorer.RANGES),
        "series": series,
        "figures": figures,
        "start": start,
        "end": end,
        "tz": tz,
        "query": _query({"environment": environment.slug, "range": range_label}),
    }
    template = (
        "telemetry/_charts.html"
        if request.headers.get("HX-Request")
        else "telemetry/agent_telemetry.html"
    )
    return render(request, template, context)


@login_required
@requires(VIEW_PERMISSION)
def records(request: HttpRequest, pk: int) -> HttpResponse:
    """The records explorer of one agent in one environment: filters, newest first, keyset
    pages of ``explorer.PAGE_SIZE``; cost outliers flagged (and alone with ``outliers=1``);
    each record with its trace link."""
    agent = _agent(request, pk)
    environment, environments = _environment(request, agent)
    params = request.GET.copy()
    params.pop("environment", None)
    form = RecordFilterForm(params)
    rule = explorer.cost_outlier_rule(agent=agent, environment=environment)
    page = explorer.RecordPage(records=[], next_cursor=None)
    range_label = explorer.DEFAULT_RANGE
    filtered = False
    if form.is_valid():
        data = form.cleaned_data
        range_label = data["range"] or explorer.DEFAULT_RANGE
        since, until = explorer.time_range(range_label)
        filters = explorer.RecordFilters(
            since=since,
            until=until,
            outcome=data["outcome"],
            version_digest=data["version"].strip(),
            variant=data["variant"],
            session=data["session"].strip(),
            min_cost=data["min_cost"],
            min_latency_ms=data["min_latency"],
        )
        filtered = any(
            [
                filters.outcome,
                filters.version_digest,
                filters.variant,
                filters.session,
                filters.min_cost is not None,
                filters.min_latency_ms is not None,
                data["outliers"],
            ]
        )
        queryset = explorer.records_for(agent=agent, environment=environment, filters=filters)
        if data["outliers"]:
            queryset = explorer.cost_outliers(queryset, rule)
        try:
            page = explorer.records_page(queryset, after=data["after"] or None)
        except explorer.BadCursor as exc:
            form.add_error("after", str(exc))
    since, _ = explorer.time_range(range_label)
    rows = [
        {
            "record": r,
            "trace_url": explorer.trace_url(agent.tenant, r.trace_id),
            "outlier_ratio": (
                rule.ratio(r.cost_usd)
                if rule.threshold is not None and r.cost_usd > rule.threshold
                else None
            ),
        }
        for r in page.records
    ]
    kept = {k: v for k, v in (form.cleaned_data.items() if form.is_bound else []) if k != "after"}
    return render(
        request,
        "telemetry/records.html",
        {
            "agent": agent,
            "environment": environment,
            "environments": environments,
            "form": form,
            "rows": rows,
            "rule": rule,
            "filtered": filtered,
            "outliers_only": bool(form.is_valid() and form.cleaned_data["outliers"]),
            "versions": explorer.version_digests(agent=agent, environment=environment, since=since),
            "next_query": (
                _query({"environment": environment.slug, **kept, "after": page.next_cursor})
                if page.next_cursor
                else ""
            ),
            "first_query": _query({"environment": environment.slug, **kept}),
            "paged": bool(form.is_valid() and form.cleaned_data["after"]),
            "tz": _tz(agent),
        },
    )


def _record(request: HttpRequest, pk: int) -> tuple[RequestRecord, Agent, Environment]:
    ids = tenancy_selectors.tenant_ids_for_user(user=request.user)
    record = explorer.record_get(tenant_ids=ids, pk=pk)
    if record is None:
        raise Http404("No such record.")
    agent = _agent(request, record.agent_id)
    environment = tenancy_selectors.environment_get_for_user(
        user=request.user, pk=record.environment_id
    )
    return record, agent, environment


@login_required
@requires(VIEW_PERMISSION)
def record_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One request record: every field, its trace link, its session and the export form."""
    record, agent, environment = _record(request, pk)
    rule = explorer.cost_outlier_rule(agent=agent, environment=environment)
    return render(
        request,
        "telemetry/record_detail.html",
        {
            "record": record,
            "agent": agent,
            "environment": environment,
            "trace_url": explorer.trace_url(agent.tenant, record.trace_id),
            "rule": rule,
            "outlier_ratio": (
                rule.ratio(record.cost_usd)
                if rule.threshold is not None and record.cost_usd > rule.threshold
                else None
            ),
            "export_form": ExportForm(),
            "tz": _tz(agent),
        },
    )


def _notes(request: HttpRequest) -> CaseNotes:
    form = ExportForm(request.GET)
    if not form.is_valid():
        return CaseNotes()
    data = form.cleaned_data
    return CaseNotes(input=data["input"], expected=data["expected"], note=data["note"])


def _download(text: str, name: str) -> HttpResponse:
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    filename = _FILENAME_UNSAFE.sub("_", name)[:120] or "case"
    response["Content-Disposition"] = f'attachment; filename="{filename}.yaml"'
    return response


@login_required
@requires(VIEW_PERMISSION)
def record_export(request: HttpRequest, pk: int) -> HttpResponse:
    """One record as an evaluation case (YAML download, docs/ci.md)."""
    record, agent, environment = _record(request, pk)
    text = evaluation_cases_yaml(
        [record],
        agent_slug=agent.slug,
        environment_slug=environment.slug,
        trace_urls=[explorer.trace_url(agent.tenant, record.trace_id)],
        notes=_notes(request),
        title=f"Evaluation case from request {record.request_id} of {agent.slug} "
        f"in {environment.slug}.",
    )
    return _download(text, f"case-{agent.slug}-{record.request_id}")


@login_required
@requires(VIEW_PERMISSION)
def session_export(request: HttpRequest, pk: int) -> HttpResponse:
    """Every kept record of one session (``?session=``) as evaluation cases, oldest first."""
    agent = _agent(request, pk)
    environment, _ = _environment(request, agent)
    session = request.GET.get("session", "").strip()[:128]
    if not session:
        return HttpResponseBadRequest("Name the session to export (?session=…).")
    found = explorer.session_records(agent=agent, environment=environment, session=session)
    if not found:
        raise Http404("No records of this session are kept.")
    text = evaluation_cases_yaml(
        found,
        agent_slug=agent.slug,
        environment_slug=environment.slug,
        trace_urls=[explorer.trace_url(agent.tenant, r.trace_id) for r in found],
        notes=_notes(request),
        title=f"Evaluation cases from session {session} of {agent.slug} in {environment.slug} "
        f"({len(found)} requests).",
    )
    return _download(text, f"cases-{agent.slug}-session-{session}")
