"""Reading rendered HTML in tests, with the standard library's parser."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlencode


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


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []  # (element, attribute, id)
        self.invalid: list[tuple[str, str]] = []  # (element id, its aria-describedby)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if values.get("id"):
            self.ids.add(values["id"])
        where = f"<{tag} id={values.get('id', '')!r} name={values.get('name', '')!r}>"
        for name in ("aria-describedby", "aria-labelledby"):
            for ref in values.get(name, "").split():
                self.refs.append((where, name, ref))
        # a group's boxes: their fieldset carries the description (Django's use_fieldset)
        grouped = values.get("type") in ("checkbox", "radio") and "aria-describedby" not in values
        if values.get("aria-invalid") == "true" and not grouped:
            self.invalid.append((values.get("id", ""), values.get("aria-describedby", "")))


def dangling_idrefs(html: str) -> list[str]:
    """Every aria-describedby / aria-labelledby id that names no element of the page."""
    parser = _Ids()
    parser.feed(html)
    return [f"{where} {name}={ref!r}" for where, name, ref in parser.refs if ref not in parser.ids]


def invalid_fields(html: str) -> list[tuple[str, list[str]]]:
    """(id, ids in its aria-describedby) of every element marked aria-invalid="true"."""
    parser = _Ids()
    parser.feed(html)
    return [(element, described.split()) for element, described in parser.invalid]


class _GetForms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._form: list[tuple[str, str]] | None = None
        self._action = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and values.get("method", "get").lower() == "get":
            self._form, self._action = [], values.get("action", "")
        elif tag == "input" and self._form is not None and values.get("name"):
            self._form.append((values["name"], values.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._form is not None:
            query = urlencode(self._form, safe="/")
            self.urls.append(self._action + (f"?{query}" if query else ""))
            self._form = None


def get_form_urls(html: str) -> list[str]:
    """Where each GET form of the page goes with its values as rendered (a button that opens a
    confirmation is such a form): "/agents/1/environments/2/rollback/?rollout=3"."""
    parser = _GetForms()
    parser.feed(html)
    return parser.urls
