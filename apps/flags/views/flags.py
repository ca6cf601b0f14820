from __future__ import annotations

import json
import zoneinfo
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from apps.core.authz import requires
from apps.core.charts import figure_html
from apps.core.ui import (
    Confirmation,
    VersionedReasonForm,
    call_service,
    confirm_with_reason,
)

from .. import charts, selectors, services
from ..editor import CONTEXT_FIELDS, STICKINESS, StrategyEditor
from ..editor.shapes import strategy_shape_problems, variant_shape_problems
from ..forms import FlagForm, ImportForm, SegmentForm
from ..models import Flag, Segment
from ._common import safe_next, selected_environment, tenant_environments


def _list_url(environment_id: int) -> str:
    return f"{reverse('flags:flag_list')}?environment={environment_id}"


@login_required
@requires("flags.view_flag")
def flag_list(request: HttpRequest) -> HttpResponse:
    tenant, environments = tenant_environments(request)
    environment = selected_environment(request, environments)
    flags = (
        selectors.flag_list_for_user(user=request.user, environment=environment)
        if environment
        else Flag.objects.none()
    )
    return render(
        request,
        "flags/flag_list.html",
        {
            "environments": environments,
            "environment": environment,
            "flags": flags,
            "segments": selectors.segment_list_for_user(user=request.user, environment=environment)
            if environment
            else [],
            "engaged_count": selectors.kill_switch_list_for_user(
                user=request.user, engaged=True, tenant_id=tenant.pk
            ).count()
            if tenant
            else 0,
            "tab": "flags",
        },
    )


def _service_call(form: Any, fn: Any) -> Any:
    try:
        return fn()
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            form.add_service_errors(exc.message_dict)
        else:
            form.add_error(None, exc.messages)
        return None


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _unchecked(form: FlagForm) -> FlagForm:
    """A bound form shown again after "Add …" or a switch of view: no errors yet (nothing
    was saved; saving checks everything)."""
    form.full_clean()
    form.errors.clear()
    return form


def _flag_form_page(
    request: HttpRequest, *, environment: Any, flag: Flag | None, initial: dict[str, Any]
) -> HttpResponse:
    """The flag form, create or edit. Strategies and variants are edited in the structured
    editor (``apps.flags.editor``) or, as "advanced", as Unleash JSON; the ``editor`` field
    says which the page showed. "Edit as JSON" / "Edit in the form" turn one into the other
    without saving (nothing is lost either way); "Add …" buttons add a row (the script does
    it in place). Saving hands the documents to the service, whose errors (keyed by path,
    in words) land on their rows."""
    editing = flag is not None
    kwargs = {"editing": editing, "production": environment.is_production}
    post = request.POST if request.method == "POST" else None
    # A POST without the editor's rows (a script, an older page) carries the JSON fields.
    mode = "form" if post is None or "strategy-TOTAL_FORMS" in post else "json"
    if post is not None and post.get("editor") in ("form", "json"):
        mode = post["editor"]
    switch = post.get("editor_switch") if post else None
    adding = post.get("editor_add") if post else None
    editor: StrategyEditor | None = None
    form: FlagForm

    if post is None:
        form = FlagForm(initial={**initial, "editor": "form"}, **kwargs)
        editor = StrategyEditor(strategies=initial["strategies"], variants=initial["variants"])
    elif switch == "json" and mode == "form":
        editor = StrategyEditor(post)
        data = post.copy()
        data["editor"] = "json"
        if editor.is_valid():
            strategies, variants = editor.documents()
            data["strategies"], data["variants"] = _json_text(strategies), _json_text(variants)
        form, editor, mode = _unchecked(FlagForm(data, **kwargs)), None, "json"
    elif switch == "form" and mode == "json":
        form = FlagForm(post, **kwargs)
        documents = {}
        for name in ("strategies", "variants"):
            try:
                documents[name] = form.fields[name].clean(post.get(name, ""))
            except ValidationError as exc:
                form.add_error(name, exc)
        shapes = {
            "strategies": strategy_shape_problems,
            "variants": variant_shape_problems,
        }
        for name, value in list(documents.items()):
            problems = shapes[name](value)
            if problems:
                # stays JSON: rows would fail on it, or show it as something else
                form.add_error(
                    name, [f"This JSON cannot be shown in the form: {p}" for p in problems]
                )
                del documents[name]
        if len(documents) == 2:
            data = post.copy()
            data["editor"] = "form"
            form, mode = _unchecked(FlagForm(data, **kwargs)), "form"
            editor = StrategyEditor(
                strategies=documents["strategies"], variants=documents["variants"]
            )
    elif adding and mode == "form":
        editor = StrategyEditor(post)
        editor.add_row(adding)
        form = _unchecked(FlagForm(post, **kwargs))
    else:
        form = FlagForm(post, **kwargs)
        editor = StrategyEditor(post) if mode == "form" else None
        saved = _flag_save(request, form, editor, environment=environment, flag=flag)
        if saved is not None:
            return saved
    return render(
        request,
        "flags/flag_form.html",
        {
            "form": form,
            "editor": editor,
            "mode": mode,
            "environment": environment,
            "flag": flag,
            "title": f"Edit {flag.name}" if flag else f"New flag in {environment.name}",
            "context_fields": CONTEXT_FIELDS,
            "stickiness_choices": STICKINESS,
        },
    )


def _flag_save(
    request: HttpRequest,
    form: FlagForm,
    editor: StrategyEditor | None,
    *,
    environment: Any,
    flag: Flag | None,
) -> HttpResponse | None:
    """Save the posted flag; the redirect, or None to show the form again with errors."""
    if not form.is_valid():
        return None
    data = dict(form.cleaned_data)
    data.pop("editor", None)
    if editor is not None:
        if not editor.is_valid():
            if not editor.errors:  # else they say why, above the strategies
                form.add_error(None, "The form was incomplete: reload the page and retry.")
            return None
        data["strategies"], data["variants"] = editor.documents()
    try:
        if flag is None:
            created = services.flag_create(actor=request.user, environment=environment, **data)
        else:
            services.flag_update(actor=request.user, flag=flag, **data)
    except ValidationError as exc:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
        if editor is not None:
            errors = editor.add_errors(errors)
        form.add_service_errors(errors)
        return None
    if flag is None:
        messages.success(request, f"Flag {created.name} created in {environment.name}.")
        return redirect("flags:flag_detail", pk=created.pk)
    messages.success(request, f"Flag {flag.name} saved.")
    return redirect("flags:flag_detail", pk=flag.pk)


@login_required
@requires("flags.add_flag")
def flag_create(request: HttpRequest) -> HttpResponse:
    _, environments = tenant_environments(request)
    environment = selected_environment(request, environments)
    if environment is None:
        raise Http404("Choose a tenant with an environment first.")
    return _flag_form_page(
        request,
        environment=environment,
        flag=None,
        initial={
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "100", "stickiness": "default"},
                    "constraints": [],
                }
            ],
            "variants": [],
        },
    )


@login_required
def flag_detail(request: HttpRequest, pk: int) -> HttpResponse:
    flag = selectors.flag_get_for_user(user=request.user, pk=pk)
    tz = zoneinfo.ZoneInfo(flag.environment.tenant.time_zone)
    now = timezone.now()
    usage = selectors.flag_usage_hourly(flag=flag, now=now)
    variants = charts.variants_figure(
        selectors.flag_variant_usage_hourly(flag=flag, now=now), tz=tz, flag_name=flag.name, now=now
    )
    return render(
        request,
        "flags/flag_detail.html",
        {
            "flag": flag,
            "environment": flag.environment,
            "served": json.dumps(selectors.flag_feature(flag), indent=2, ensure_ascii=False),
            "usage_chart": figure_html(
                charts.usage_figure(usage, tz=tz, flag_name=flag.name, now=now)
            )
            if usage
            else "",
            "variants_chart": figure_html(variants) if variants is not None else "",
            "usage_apps": selectors.flag_usage_apps(flag=flag),
            "instances": selectors.sdk_instances_for_environment(environment=flag.environment),
        },
    )


@login_required
@requires("flags.change_flag")
def flag_edit(request: HttpRequest, pk: int) -> HttpResponse:
    flag = selectors.flag_get_for_user(user=request.user, pk=pk, action="change")
    return _flag_form_page(
        request,
        environment=flag.environment,
        flag=flag,
        initial={
            "description": flag.description,
            "type": flag.type,
            "impression_data": flag.impression_data,
            "strategies": flag.strategies,
            "variants": flag.variants,
            "dependencies": flag.dependencies,
            "expected_version": flag.version,
        },
    )


@login_required
@requires("flags.change_flag")
def flag_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    """Non-production: a POST toggles at once. Production: a confirmation page that states
    the effect and requires a reason. Either way the POST carries the flag's ``version`` the
    page showed, so of two operators clicking at once only the first changes the flag (the
    direction, on or off, is what that version showed)."""
    flag = selectors.flag_get_for_user(user=request.user, pk=pk, action="change")
    environment = flag.environment
    turn_on = not flag.enabled
    if request.method == "POST" and not environment.is_production:
        # One click, no page: the reason is optional outside production.
        form = VersionedReasonForm(request.POST, initial={"expected_version": flag.version})
        form.fields["reason"].required = False
        if not form.is_valid():
            for field_errors in form.errors.values():
                for message in field_errors:
                    messages.error(request, str(message))
            return redirect(safe_next(request, _list_url(environment.pk)))
        try:
            services.flag_toggle(
                actor=request.user,
                flag=flag,
                enabled=turn_on,
                reason=form.cleaned_data["reason"],
                expected_version=form.cleaned_data["expected_version"],
            )
        except ValidationError as exc:
            for message in exc.messages:
                messages.error(request, message)
        else:
            messages.success(
                request, f"{flag.name} is now {'on' if turn_on else 'off'} in {environment.name}."
            )
        return redirect(safe_next(request, _list_url(environment.pk)))

    def shown(flag: Flag) -> Confirmation:
        turn_on = not flag.enabled
        return Confirmation(
            title=f"Turn {flag.name} {'on' if turn_on else 'off'} in {environment.name}?",
            effect=f"{flag.name} turns {'ON' if turn_on else 'OFF'} in {environment.name} "
            f"({environment.tenant.name}) for every SDK and runtime of it, at their next "
            "refresh or at once when streaming.",
            action_label=f"Turn {'on' if turn_on else 'off'}",
            danger=not turn_on,
            version=flag.version,
        )

    return confirm_with_reason(
        request,
        shown=shown(flag),
        act=lambda reason, expected_version: services.flag_toggle(
            actor=request.user,
            flag=flag,
            enabled=turn_on,
            reason=reason,
            expected_version=expected_version,
        ),
        done_url=reverse("flags:flag_detail", kwargs={"pk": flag.pk}),
        done_message=f"{flag.name} is now {'on' if turn_on else 'off'} in {environment.name}.",
        reread=lambda: shown(selectors.flag_get_for_user(user=request.user, pk=pk)),
    )


@login_required
@requires("flags.delete_flag")
def flag_delete(request: HttpRequest, pk: int) -> HttpResponse:
    flag = selectors.flag_get_for_user(user=request.user, pk=pk, action="delete")

    # The version the confirmation showed: a flag re-configured meanwhile is not deleted blind.
    def shown(flag: Flag) -> Confirmation:
        return Confirmation(
            title=f"Delete {flag.name} from {flag.environment.name}?",
            effect=f"SDKs of {flag.environment.name} stop seeing {flag.name}: is_enabled answers "
            "false (or the fallback) from their next refresh. Its usage history stays.",
            action_label="Delete flag",
            version=flag.version,
        )

    return confirm_with_reason(
        request,
        shown=shown(flag),
        act=lambda reason, expected_version: services.flag_delete(
            actor=request.user, flag=flag, reason=reason, expected_version=expected_version
        ),
        done_url=_list_url(flag.environment_id),
        done_message=f"Flag {flag.name} deleted.",
        reread=lambda: shown(selectors.flag_get_for_user(user=request.user, pk=pk)),
    )


@login_required
@requires("flags.add_flag")
def flag_import(request: HttpRequest) -> HttpResponse:
    _, environments = tenant_environments(request)
    selected = selected_environment(request, environments)
    form = ImportForm(
        request.POST or None,
        request.FILES or None,
        environments=environments,
        initial={"environment": selected.pk if selected else None},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        environment = next(e for e in environments if e.pk == data["environment"])
        result = call_service(
            form,
            lambda: services.flags_import(
                actor=request.user,
                environment=environment,
                payload=data["parsed"],
                mode=data["mode"],
                reason=data["reason"],
            ),
        )
        if result is not None:
            return render(
                request, "flags/import_done.html", {"result": result, "environment": environment}
            )
    return render(request, "flags/import.html", {"form": form})


# --------------------------------------------------------------------------- segments


@login_required
@requires("flags.add_segment")
def segment_create(request: HttpRequest) -> HttpResponse:
    _, environments = tenant_environments(request)
    environment = selected_environment(request, environments)
    if environment is None:
        raise Http404("Choose a tenant with an environment first.")
    form = SegmentForm(request.POST or None, production=environment.is_production)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        segment = _service_call(
            form,
            lambda: services.segment_create(actor=request.user, environment=environment, **data),
        )
        if segment is not None:
            messages.success(request, f"Segment {segment.name} (id {segment.segment_id}) created.")
            return redirect(_list_url(environment.pk))
    return render(
        request,
        "flags/segment_form.html",
        {"form": form, "environment": environment, "title": f"New segment in {environment.name}"},
    )


@login_required
@requires("flags.change_segment")
def segment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    segment = selectors.segment_get_for_user(user=request.user, pk=pk, action="change")
    form = SegmentForm(
        request.POST or None,
        editing=True,
        production=segment.environment.is_production,
        initial={
            "name": segment.name,
            "description": segment.description,
            "constraints": segment.constraints,
            "expected_version": segment.version,
        },
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if (
            _service_call(
                form, lambda: services.segment_update(actor=request.user, segment=segment, **data)
            )
            is not None
        ):
            messages.success(request, f"Segment {segment.name} saved.")
            return redirect(_list_url(segment.environment_id))
    return render(
        request,
        "flags/segment_form.html",
        {
            "form": form,
            "environment": segment.environment,
            "segment": segment,
            "title": f"Edit segment {segment.name}",
        },
    )


@login_required
@requires("flags.delete_segment")
def segment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    segment = selectors.segment_get_for_user(user=request.user, pk=pk, action="delete")

    def shown(segment: Segment) -> Confirmation:
        return Confirmation(
            title=f"Delete segment {segment.name}?",
            effect=f"Segment {segment.segment_id} disappears from {segment.environment.name}. "
            "Refused while a flag uses it.",
            action_label="Delete segment",
            version=segment.version,
        )

    return confirm_with_reason(
        request,
        shown=shown(segment),
        act=lambda reason, expected_version: services.segment_delete(
            actor=request.user, segment=segment, reason=reason, expected_version=expected_version
        ),
        done_url=_list_url(segment.environment_id),
        done_message=f"Segment {segment.name} deleted.",
        reread=lambda: shown(selectors.segment_get_for_user(user=request.user, pk=pk)),
    )
