"""Small helpers shared by the browser views of every app."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django import forms
from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

T = TypeVar("T")
D = TypeVar("D")


def call_service(form: forms.Form, fn: Callable[[], T]) -> T | None:
    """Run a service for a bound, valid form; put its validation errors on the form's fields
    (unknown field names become form-wide errors). Returns None when it refused."""
    try:
        return fn()
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, messages in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
        else:
            form.add_error(None, exc)  # keeps the code ("stale" for a StaleVersion)
        return None


def query_choice(request: HttpRequest, name: str, choices: Mapping[str, T], default: D) -> T | D:
    """The object the query parameter ``name`` names among ``choices`` (keyed by how the URL
    spells it: ``"3"`` for version 3 or id 3, a slug). Absent or empty: ``default``. Anything
    else — a version or id that does not exist, or is not the user's — is ``Http404`` naming
    the parameter: a URL that names one object never silently shows another."""
    wanted = request.GET.get(name, "")
    if wanted == "":
        return default
    if wanted not in choices:
        raise Http404(f"No such {name.replace('_', ' ')}: {wanted[:40]!r}.")
    return choices[wanted]


def local_url(request: HttpRequest, wanted: str | None, default: str) -> str:
    """``wanted`` (a ``next`` parameter) when it stays on this site, else ``default``: where
    to go back to after an action. Django's check, not a prefix test: "/\\evil.example"
    passes ``startswith("/")`` and a browser follows it to another site."""
    if wanted and url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    return default


def paginate(
    request: HttpRequest, queryset: QuerySet[Any] | Sequence[Any], per_page: int = 25
) -> Page:
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why? This goes into the audit log."}
        ),
        max_length=2000,
    )


class ExpectedVersionField(forms.IntegerField):
    """The version of "the current X" the page showed, sent back as a hidden input so the
    service can refuse the change if someone else changed X in between (optimistic
    concurrency, docs/decisions/0007)."""

    widget = forms.HiddenInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", 2**31 - 1)
        kwargs.setdefault(
            "error_messages",
            {"required": "The page did not say which version it showed: reload it and retry."},
        )
        super().__init__(**kwargs)


class VersionedReasonForm(ReasonForm):
    """A confirmation's reason plus the version of the thing it confirms a change of."""

    expected_version = ExpectedVersionField()


def rebase_if_stale(form: forms.Form, version: int) -> None:
    """After a change refused as stale, a confirmation page re-renders stating the *current*
    effect; its hidden ``expected_version`` must then be the version that effect was read
    from (not the one posted), so a second, informed click acts on what is now shown."""
    if form.is_bound and form.has_error(NON_FIELD_ERRORS, "stale"):
        form.data = {**form.data, "expected_version": str(version)}


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation page states: its ``title`` (a question), the ``effect`` of the
    action in the operator's words ("support-bot in production goes back to v1 on 300
    runtimes"), the submit button's ``action_label``, whether it is ``danger``-ous (a red
    button), and the ``version`` of the thing it changes as the page read it (carried as the
    hidden ``expected_version``; None when the change acts on nothing versioned)."""

    title: str
    effect: str
    action_label: str
    danger: bool = True
    version: int | None = None


def confirm_with_reason(
    request: HttpRequest,
    *,
    shown: Confirmation,
    act: Callable[[str, int | None], object],
    done_url: str,
    done_message: str | Callable[[Any], str],
    reread: Callable[[], Confirmation] | None = None,
) -> HttpResponse:
    """The confirmation page of every destructive or far-reaching action (UI.md, "Actions"),
    one template (``partials/confirm.html``) and one behaviour:

    - GET renders ``shown``: the effect, a required reason and, when ``shown.version`` is not
      None, the hidden ``expected_version``;
    - POST with a valid form calls ``act(reason, expected_version)`` (the service; the
      reason stripped and non-empty, ``expected_version`` None when unversioned). Success:
      ``done_message`` (text, or a function of what ``act`` returned) as a success message
      and a redirect to ``done_url`` (a URL, a path or a URL name without arguments);
    - a refusal (``ValidationError``: field errors on the form, a ``StaleVersion`` form-wide)
      re-renders the page with the errors, stating what ``reread()`` reads now (default:
      ``shown``); after a stale refusal the hidden version becomes that current one, so a
      second, informed click acts on what the page now states (``rebase_if_stale``).

    ``act`` returning None counts as a refusal (as in :func:`call_service`). The caller has
    authorised the user for the page; the service authorises again."""
    form: ReasonForm = (
        ReasonForm(request.POST or None)
        if shown.version is None
        else VersionedReasonForm(request.POST or None, initial={"expected_version": shown.version})
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        result = call_service(form, lambda: act(data["reason"], data.get("expected_version")))
        if result is not None:
            messages.success(
                request, done_message(result) if callable(done_message) else done_message
            )
            return redirect(done_url)
        shown = reread() if reread is not None else shown
        if shown.version is not None:
            rebase_if_stale(form, shown.version)
    return render(
        request,
        "partials/confirm.html",
        {
            "form": form,
            "title": shown.title,
            "effect": shown.effect,
            "action_label": shown.action_label,
            "danger": shown.danger,
        },
    )
