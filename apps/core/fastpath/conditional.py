"""``If-None-Match`` as RFC 9110 defines it (section 13.1.2), in one place for every route.

The header is ``*`` or a comma-separated list of entity tags, each ``"opaque"`` (strong) or
``W/"opaque"`` (weak). ``If-None-Match`` uses the **weak comparison** (section 8.8.3.2): two
tags match when their opaque parts are equal, whether either is weak. So a tag a compressing
proxy weakened (``W/"x"``) still matches ``"x"``; a list matches when any member does; ``*``
matches any current representation.

Anything that is not a well-formed list (a bare token, an unclosed quote, garbage between tags)
matches nothing: the request is then answered as an unconditional one, which is always safe
(RFC 9110 section 13.1: a recipient may ignore a condition it cannot parse)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# One entity tag: optional W/ then a quoted string of etagc characters (RFC 9110 8.8.3:
# %x21 / %x23-7E / obs-text, i.e. no space, no DQUOTE, no controls).
_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*')


@dataclass(frozen=True)
class IfNoneMatch:
    """A parsed ``If-None-Match`` header: ``any`` for ``*``, else the opaque parts of its tags
    (weakness dropped: the weak comparison ignores it)."""

    any: bool
    opaque: frozenset[str]

    def matches(self, etag: str) -> bool:
        """Weak comparison of ``etag`` (the current representation's tag, as sent in the
        ``ETag`` header) with every tag of the header."""
        if self.any:
            return True
        parsed = _opaque(etag)
        return parsed is not None and parsed in self.opaque


NONE = IfNoneMatch(any=False, opaque=frozenset())


def _opaque(tag: str) -> str | None:
    match = _ENTITY_TAG.fullmatch(tag)
    return match.group(2) if match else None


def parse_entity_tags(value: str) -> list[tuple[bool, str]] | None:
    """A comma-separated list of entity tags as ``[(weak, opaque), ...]``, or None when
    ``value`` is not a well-formed list (``*`` included: callers test for it first).
    Several header lines joined with commas (as ASGI servers and proxies may do) parse as
    one list; empty list elements are skipped (RFC 9110 5.6.1)."""
    tags: list[tuple[bool, str]] = []
    position = 0
    while position < len(value):
        match = _ENTITY_TAG.match(value, position)
        if match is None:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
        if position < len(value):
            if value[position] != ",":
                return None
            position += 1
            while position < len(value) and value[position] in " \t,":
                position += 1
    return tags or None


def parse_if_none_match(value: str | None) -> IfNoneMatch:
    """Parse the header value; absent, empty or malformed gives a condition matching
    nothing (garbage: ignore the whole condition rather than guess)."""
    value = (value or "").strip()
    if not value:
        return NONE
    if value == "*":
        return IfNoneMatch(any=True, opaque=frozenset())
    tags = parse_entity_tags(value)
    if tags is None:
        return NONE
    return IfNoneMatch(any=False, opaque=frozenset(opaque for _, opaque in tags))


def if_none_match_matches(header: str | None, etag: str) -> bool:
    """True when a request carrying ``If-None-Match: <header>`` already has the
    representation tagged ``etag`` (so it gets 304, or a long-poll waits)."""
    return parse_if_none_match(header).matches(etag)
