"""The bundles pages: versions per agent, one version, the editor, diffs, promotion gates."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from apps.core.authz import requires
from apps.core.ui import paginate, query_choice
from apps.tenancy.context_processors import current_tenant_for
from apps.tenancy.models import Agent
from apps.tenancy.selectors import (
    agent_get_for_user,
    environment_get_for_user,
    environment_list_for_user,
)

from . import presenters, selectors, services
from .diff import bundle_diff
from .exports import export_filename, export_json, export_yaml
from .forms import BundleEditorForm, CompareForm, GateReasonForm, GateRequirementFormSet
from .gates import percent
from .models import BundleVersion
from .schema import SCHEMA_PATH
from .validation import validate_source

STARTER = (Path(__file__).parent / "starter.yaml").read_text()


@login_required
def index(request: HttpRequest) -> HttpResponse:
    tenant = current_tenant_for(request)
    q = request.GET.get("q", "").strip()
    agents: QuerySet[Agent] | list[Agent] = (
        selectors.agent_bundle_summaries(user=request.user, tenant=tenant, q=q) if tenant else []
    )
    return render(
        request,
        "bundles/index.html",
        {"page": paginate(request, agents), "q": q, "query": f"q={q}" if q else ""},
    )


@login_required
def agent_versions(request: HttpRequest, agent_pk: int) -> HttpResponse:
    agent = agent_get_for_user(user=request.user, pk=agent_pk)
    page = paginate(request, selectors.bundle_version_list(agent=agent))
    environments = list(environment_list_for_user(user=request.user, tenant=agent.tenant))
    statuses = selectors.gate_statuses(versions=list(page.object_list), environments=environments)
    numbers = list(selectors.bundle_version_list(agent=agent).values_list("number", flat=True))
    compare = CompareForm(
        numbers=numbers,
        initial={
            "to_version": numbers[0] if numbers else None,
            "from_version": numbers[1] if len(numbers) > 1 else None,
        },
    )
    return render(
        request,
        "bundles/agent_versions.html",
        {
            "agent": agent,
            "page": page,
            "rows": [(v, statuses[v.pk]) for v in page.object_list],
            "compare": compare,
            "gate_badges": presenters.GATE_BADGES,
        },
    )


def _version(request: HttpRequest, agent_pk: int, number: int) -> BundleVersion:
    agent = agent_get_for_user(user=request.user, pk=agent_pk)
    return selectors.bundle_version_get(agent=agent, number=number)


@login_required
def version_detail(request: HttpRequest, agent_pk: int, number: int) -> HttpResponse:
    version = _version(request, agent_pk, number)
    environments = list(environment_list_for_user(user=request.user, tenant=version.agent.tenant))
    content = version.content
    policies = content.get("policies", {})
    return render(
        request,
        "bundles/version_detail.html",
        {
            "version": version,
            "agent": version.agent,
            "gates": selectors.gate_statuses(versions=[version], environments=environments)[
                version.pk
            ],
            "gate_badges": presenters.GATE_BADGES,
            "evaluations": paginate(
                request, selectors.evaluation_list(version=version), per_page=20
            ),
            "content": content,
            "prompts": presenters.prompts(content),
            "tools": presenters.tools(content),
            "rules": presenters.rules(content),
            "limits": policies.get("limits", {}),
            "input": policies.get("input"),
            "output": policies.get("output"),
            "retrieval": content.get("retrieval"),
            "memory": content.get("memory"),
            "children": version.children.order_by("number").values_list("number", flat=True),
        },
    )


@login_required
def version_download(request: HttpRequest, agent_pk: int, number: int, fmt: str) -> HttpResponse:
    version = _version(request, agent_pk, number)
    if fmt == "yaml":
        body = export_yaml(version, schema_url=request.build_absolute_uri(SCHEMA_PATH))
        content_type = "application/yaml; charset=utf-8"
    else:
        body, content_type = export_json(version), "application/json; charset=utf-8"
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{export_filename(version, fmt)}"'
    return response


def _editor_context(
    form: BundleEditorForm,
    source: str,
    errors: dict[str, list[str]],
    warnings: dict[str, list[str]],
) -> dict[str, Any]:
    found = presenters.findings(source, errors, warnings)
    return {
        "findings": found,
        "annotated": presenters.annotated_source(source, found) if found else [],
        "error_count": sum(1 for f in found if f.level == "error"),
        "warning_count": sum(1 for f in found if f.level == "warning"),
    }


@login_required
@requires("bundles.add_bundleversion")
def version_new(request: HttpRequest, agent_pk: int) -> HttpResponse:
    """The editor: prefilled from a version (?from=N) or a starter file; "Check" validates
    on the server, "Push" stores a new version. Errors appear on the lines they point at."""
    agent = agent_get_for_user(user=request.user, pk=agent_pk)
    context: dict[str, Any] = {"agent": agent, "checked": False, "findings": [], "annotated": []}
    if request.method != "POST":
        base_number = request.GET.get("from", "")
        if base_number and not (base_number.isascii() and base_number.isdigit()):
            raise Http404(f"{agent.slug} has no version {base_number[:40]!r}.")
        base = (
            selectors.bundle_version_get(agent=agent, number=int(base_number))
            if base_number
            else selectors.bundle_version_latest(agent=agent)
        )
        if base is None:
            text = STARTER
        elif base.source_format == "yaml" and base.source:
            text = presenters.editor_text(base.source)
        else:
            text = export_yaml(base)
        form = BundleEditorForm(initial={"source": text, "parent": base.number if base else None})
        return render(request, "bundles/editor.html", {**context, "form": form, "base": base})

    form = BundleEditorForm(request.POST)
    checking = request.POST.get("action") == "check"
    form.fields["message"].required = not checking
    base = None
    if form.is_valid():
        source = form.cleaned_data["source"]
        parent = form.cleaned_data["parent"]
        base = selectors.bundle_version_get(agent=agent, number=parent) if parent else None
        if checking:
            result = validate_source(source)
            context.update(
                _editor_context(form, source, result.errors, result.warnings),
                checked=True,
                digest=result.digest,
            )
        else:
            try:
                pushed = services.bundle_version_push(
                    actor=request.user,
                    agent=agent,
                    source=source,
                    message=form.cleaned_data["message"],
                    parent_number=parent,
                )
            except services.BundleInvalid as exc:
                if "message" in exc.errors_by_pointer:
                    form.add_error("message", exc.errors_by_pointer["message"])
                bundle_errors = {k: v for k, v in exc.errors_by_pointer.items() if k != "message"}
                context.update(
                    _editor_context(form, source, bundle_errors, exc.result.warnings), checked=True
                )
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                version = pushed.version
                if pushed.created:
                    messages.success(
                        request,
                        f"Pushed {agent.slug} v{version.number} (sha256:{version.digest[:12]}…).",
                    )
                else:
                    messages.info(
                        request,
                        f"Nothing new: this content is already {agent.slug} v{version.number}.",
                    )
                return redirect("bundles:version_detail", agent_pk=agent.pk, number=version.number)
    return render(request, "bundles/editor.html", {**context, "form": form, "base": base})


@login_required
def version_diff(request: HttpRequest, agent_pk: int) -> HttpResponse:
    agent = agent_get_for_user(user=request.user, pk=agent_pk)
    numbers = list(selectors.bundle_version_list(agent=agent).values_list("number", flat=True))
    if len(numbers) < 2:
        messages.info(request, f"{agent.slug} has fewer than two versions: nothing to compare yet.")
        return redirect("bundles:agent_versions", agent_pk=agent.pk)
    # A URL naming a version that does not exist is a 404, never another pair.
    known = {str(n): n for n in numbers}
    new_number = query_choice(request, "to_version", known, numbers[0])
    newest = selectors.bundle_version_get(agent=agent, number=new_number)
    others = [n for n in numbers if n != new_number]
    fallback = newest.parent.number if newest.parent else others[0]
    old_number = query_choice(request, "from_version", known, fallback)
    form = CompareForm(
        numbers=numbers, initial={"from_version": old_number, "to_version": new_number}
    )
    old = selectors.bundle_version_get(agent=agent, number=old_number)
    new = selectors.bundle_version_get(agent=agent, number=new_number)
    return render(
        request,
        "bundles/diff.html",
        {
            "agent": agent,
            "old": old,
            "new": new,
            "form": form,
            "diff": bundle_diff(old.content, new.content),
        },
    )


@login_required
def agent_summary(request: HttpRequest, agent_pk: int) -> HttpResponse:
    """A fragment for the agent page: its latest versions."""
    agent = agent_get_for_user(user=request.user, pk=agent_pk)
    versions = list(selectors.bundle_version_list(agent=agent)[:3])
    return render(
        request,
        "bundles/_agent_summary.html",
        {
            "agent": agent,
            "versions": versions,
            "count": selectors.bundle_version_list(agent=agent).count(),
        },
    )


# --------------------------------------------------------------------------- promotion gates


@login_required
def gate_list(request: HttpRequest) -> HttpResponse:
    tenant = current_tenant_for(request)
    rows = selectors.promotion_gate_rows(user=request.user, tenant=tenant) if tenant else []
    return render(
        request, "bundles/gate_list.html", {"page": paginate(request, rows), "percent": percent}
    )


@login_required
@requires("bundles.change_promotiongate")
def gate_edit(request: HttpRequest, environment_pk: int) -> HttpResponse:
    environment = environment_get_for_user(user=request.user, pk=environment_pk)
    if environment.is_archived:
        raise Http404("This environment is archived.")
    row = selectors.promotion_gate_row(environment=environment)
    initial = [
        {"suite": r.suite, "min_pass_rate": (r.min_pass_rate * 100).normalize()}
        for r in row["requirements"]
    ]
    formset = GateRequirementFormSet(request.POST or None, initial=initial, prefix="req")
    reason = GateReasonForm(request.POST or None)
    problems: list[str] = []
    status = 200
    if request.method == "POST" and formset.is_valid() and reason.is_valid():
        requirements = [
            {
                "suite": f.cleaned_data["suite"].strip(),
                "min_pass_rate": f.cleaned_data["min_pass_rate"] / Decimal(100),
            }
            for f in formset.forms
            if f.cleaned_data.get("suite") and not f.cleaned_data.get("DELETE")
        ]
        try:
            services.promotion_gate_set(
                actor=request.user,
                environment=environment,
                requirements=requirements,
                reason=reason.cleaned_data["reason"],
            )
        except PermissionDenied as exc:
            # loosening is an Admin's decision: said on the form, which keeps what was typed
            problems.append(str(exc))
            status = 403
        except ValidationError as exc:
            for field, found in exc.message_dict.items():
                if field == "reason":
                    reason.add_error("reason", found)
                else:
                    problems.extend(found)
        else:
            messages.success(request, f"Promotion gate of {environment.name} saved.")
            return redirect(reverse("bundles:gate_list"))
    return render(
        request,
        "bundles/gate_edit.html",
        {
            "environment": environment,
            "formset": formset,
            "reason_form": reason,
            "problems": problems,
        },
        status=status,
    )
