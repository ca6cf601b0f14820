"""The product's own documentation, served by the running product: ``/docs/<name>/`` renders
``docs/<name>.md`` from the installation (CommonMark with tables, raw HTML escaped), so a
page that says "the format is in docs/bundle-format.md" links to something that answers.
Links between the documents are rewritten to these pages; only the top-level documents are
served (``documents()``), never a path a client makes up."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# href="flags.md" or href="flags.md#anchor", as markdown-it renders a relative link
LOCAL_LINK = re.compile(r'href="([a-z0-9][a-z0-9-]{0,63})\.md(#[^"]*)?"')


def docs_dir() -> Path:
    """Where the documents are (``settings.DOCS_DIR``, default ``<project>/docs``)."""
    return Path(getattr(settings, "DOCS_DIR", settings.BASE_DIR / "docs"))


def documents() -> dict[str, Path]:
    """name -> file, for every top-level ``docs/*.md`` (``bundle-format`` → bundle-format.md)."""
    folder = docs_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.md")) if NAME.match(p.stem)}


@lru_cache(maxsize=64)
def _render(path: str, mtime_ns: int) -> tuple[str, str]:
    text = Path(path).read_text(encoding="utf-8")
    html = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    names = set(documents())

    def local(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            return match.group(0)
        url = reverse("dashboard:doc", kwargs={"name": match.group(1)})
        return f'href="{url}{match.group(2) or ""}"'

    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "")
    return LOCAL_LINK.sub(local, html), title


def doc_html(name: str) -> tuple[SafeString, str]:
    """The document ``name`` as HTML (safe: markdown-it escapes raw HTML) and its title.
    Raises ``Http404`` for a name that is no document."""
    path = documents().get(name) if NAME.match(name) else None
    if path is None:
        raise Http404("No such document.")
    html, title = _render(str(path), path.stat().st_mtime_ns)
    return mark_safe(html), title or name  # noqa: S308 -- markdown-it with html disabled


@login_required
def doc(request: HttpRequest, name: str) -> HttpResponse:
    """One document of the product's documentation, rendered."""
    html, title = doc_html(name)
    return render(
        request,
        "dashboard/doc.html",
        {"html": html, "title": title, "name": name, "documents": sorted(documents())},
    )
