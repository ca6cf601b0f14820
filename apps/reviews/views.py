"""The review queue of an agent in an environment: sampled sessions to grade, and the graded
ones with their grade beside the automatic scores; the share of sessions sampled."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.core.authz import requires
from apps.core.ui import call_service
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.models import Agent, Environment

from . import selectors, services
from .forms import GradeForm, PolicyForm

VIEW = "reviews.view_reviewgrade"


def _scope(
    request: HttpRequest, pk: int, slug: str
) -> tuple[Agent, Environment, list[Environment]]:
    agent = tenancy_selectors.agent_get_for_user(user=request.user, pk=pk)
    environment, environments = tenancy_selectors.environment_chosen(
        user=request.user, tenant=agent.tenant, slug=slug
    )
    return agent, environment, environments


def _back(agent: Agent, environment: Environment) -> str:
    return f"{reverse('reviews:queue', args=[agent.pk])}?environment={environment.slug}"


@login_required
@requires(VIEW)
def queue(request: HttpRequest, pk: int) -> HttpResponse:
    agent, environment, environments = _scope(request, pk, request.GET.get("environment", ""))
    to_review, graded = selectors.review_queue(agent=agent, environment=environment)
    share = selectors.review_share(agent=agent)
    return render(
        request,
        "reviews/queue.html",
        {
            "agent": agent,
            "environment": environment,
            "environments": environments,
            "to_review": to_review,
            "graded": graded,
            "share": share,
            "share_percent": share * 100,
            "policy_form": PolicyForm(initial={"share": share}),
            "grade_choices": GradeForm.base_fields["grade"].choices,  # type: ignore[attr-defined]
        },
    )


def _submit(
    request: HttpRequest,
    form: forms.Form,
    action: Callable[[], object],
    *,
    success: Callable[[], str],
) -> None:
    """Run ``action`` (a service call) when ``form`` is valid and flash ``success()``; else
    flash each field's errors (the queue page shows no form to re-render them in)."""
    if form.is_valid() and call_service(form, action) is not None:
        messages.success(request, success())
        return
    for field, errors in form.errors.items():
        messages.error(request, f"{field}: {' '.join(str(e) for e in errors)}")


@login_required
@requires(VIEW)
@requires("reviews.add_reviewgrade")
@require_POST
def grade(request: HttpRequest, pk: int) -> HttpResponse:
    agent, environment, _ = _scope(request, pk, request.POST.get("environment", ""))
    form = GradeForm(request.POST)
    _submit(
        request,
        form,
        lambda: services.review_grade(
            actor=request.user, agent=agent, environment=environment, **form.cleaned_data
        ),
        success=lambda: f"Session {form.cleaned_data['session_id']} graded.",
    )
    return redirect(_back(agent, environment))


@login_required
@requires(VIEW)
@requires("reviews.change_reviewpolicy")
@require_POST
def policy(request: HttpRequest, pk: int) -> HttpResponse:
    agent, environment, _ = _scope(request, pk, request.POST.get("environment", ""))
    form = PolicyForm(request.POST)
    _submit(
        request,
        form,
        lambda: services.review_policy_set(
            actor=request.user,
            agent=agent,
            share=form.cleaned_data["share"],
            reason=form.cleaned_data["reason"],
        ),
        success=lambda: "Review share saved.",
    )
    return redirect(_back(agent, environment))
