"""The product's own documentation, served by the running product: ``/docs/<name>/`` renders
``docs/<name>.md`` (and ``docs/decisions/<name>.md``) from the installation (CommonMark with
tables, raw HTML escaped), so a page that says "the format is in the bundle format guide"
links to something that answers. Links between the documents are rewritten to these pages,
screenshots to ``/docs/screenshots/<file>.png`` and the bundle schema to the API's copy; a
relative link to anything else (a source file) is left as text. Only the documents found by
``documents()`` are served, never a path a client makes up."""

from __future__ import annotations

import posixpath
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

NAME = re.compile(r"^(decisions/)?[a-z0-9][a-z0-9-]{0,80}$")
SCREENSHOT = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}\.png$")
EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|/|#)", re.IGNORECASE)


def docs_dir() -> Path:
    """Where the documents are (``settings.DOCS_DIR``, default ``<project>/docs``)."""
    return Path(getattr(settings, "DOCS_DIR", settings.BASE_DIR / "docs"))


def documents() -> dict[str, Path]:
    """name -> file for every ``docs/*.md`` and ``docs/decisions/*.md`` (``bundle-format``,
    ``decisions/0028-promotion-gates-enforced``)."""
    folder = docs_dir()
    found: dict[str, Path] = {}
    for prefix, where in (("", folder), ("decisions/", folder / "decisions")):
        if where.is_dir():
            for path in sorted(where.glob("*.md")):
                if NAME.match(prefix + path.stem):
                    found[prefix + path.stem] = path
    return found


def _target(href: str, here: str, names: set[str]) -> str | None:
    """Where a relative link of the document ``here`` goes in the product; None: nowhere
    (a source file the product does not serve)."""
    path, _, anchor = href.partition("#")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(here), path))
    fragment = f"#{anchor}" if anchor else ""
    if resolved.endswith(".md") and resolved[:-3] in names:
        return reverse("dashboard:doc", kwargs={"name": resolved[:-3]}) + fragment
    if resolved == "bundle.schema.json":
        return reverse("bundle-schema")
    if resolved.startswith("screenshots/") and SCREENSHOT.match(resolved[12:]):
        return reverse("dashboard:doc_screenshot", kwargs={"name": resolved[12:]})
    return None


def _relink(tokens: list[Any], here: str, names: set[str]) -> None:
    for token in tokens:
        for child in token.children or []:
            if child.type == "link_open":
                href = str(child.attrGet("href") or "")
                if href and not EXTERNAL.match(href):
                    target = _target(href, here, names)
                    if target is None:
                        child.attrs.pop("href", None)  # stays as text, not a dead link
                    else:
                        child.attrSet("href", target)
            elif child.type == "image":
                src = str(child.attrGet("src") or "")
                if src and not EXTERNAL.match(src):
                    target = _target(src, here, names)
                    if target is None:
                        child.type, child.content = "text", f"[image: {child.content}]"
                    else:
                        child.attrSet("src", target)


@lru_cache(maxsize=128)
def _render(name: str, path: str, mtime_ns: int) -> tuple[str, str]:
    text = Path(path).read_text(encoding="utf-8")
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    env: dict[str, Any] = {}
    tokens = md.parse(text, env)
    _relink(tokens, name, set(documents()))
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "")
    html = md.renderer.render(tokens, md.options, env)
    # A code block wider than the page scrolls; keyboard users scroll it once it takes the
    # focus (WCAG 2.1.1). Raw HTML is escaped (html=False), so every "<pre>" is markdown-it's.
    return html.replace("<pre>", '<pre tabindex="0">'), title


def doc_html(name: str) -> tuple[SafeString, str]:
    """The document ``name`` as HTML (safe: markdown-it escapes raw HTML) and its title.
    Raises ``Http404`` for a name that is no document."""
    path = documents().get(name) if NAME.match(name) else None
    if path is None:
        raise Http404("No such document.")
    html, title = _render(name, str(path), path.stat().st_mtime_ns)
    return mark_safe(html), title or name  # noqa: S308 -- markdown-it with html disabled


@login_required
def doc(request: HttpRequest, name: str) -> HttpResponse:
    """One document of the product's documentation, rendered."""
    html, title = doc_html(name)
    guides = sorted(n for n in documents() if not n.startswith("decisions/"))
    return render(
        request,
        "dashboard/doc.html",
        {"html": html, "title": title, "name": name, "documents": guides},
    )


@login_required
def doc_screenshot(request: HttpRequest, name: str) -> FileResponse:
    """A screenshot the documents show (``docs/screenshots/<name>.png``)."""
    path = docs_dir() / "screenshots" / name
    if not SCREENSHOT.match(name) or not path.is_file():
        raise Http404("No such screenshot.")
    return FileResponse(path.open("rb"), content_type="image/png")
