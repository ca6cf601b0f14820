"""Reading rendered HTML in tests, with the standard library's parser."""

from __future__ import annotations

from html.parser import HTMLParser


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.sidebar: list[str] = []
        self._in_sidebar = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "nav" and "sidebar" in (values.get("class") or "").split():
            self._in_sidebar += 1
        for name in ("src", "href"):
            value = values.get(name)
            if value is not None:
                self.refs.append((tag, name, value))
                if self._in_sidebar and tag == "a" and name == "href":
                    self.sidebar.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav" and self._in_sidebar:
            self._in_sidebar -= 1


def _collect(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


def references(html: str) -> list[tuple[str, str, str]]:
    """Every (tag, attribute, value) for src= and href= in the page."""
    return _collect(html).refs


def external_references(html: str) -> list[tuple[str, str, str]]:
    return [
        ref for ref in references(html) if ref[2].lower().startswith(("http://", "https://", "//"))
    ]


def local_assets(html: str) -> list[str]:
    """Scripts, stylesheets and images the page loads from this site."""
    return [
        value
        for tag, attr, value in references(html)
        if (tag in ("script", "img") and attr == "src") or (tag == "link" and attr == "href")
        if value.startswith("/")
    ]


def sidebar_links(html: str) -> list[str]:
    return _collect(html).sidebar
