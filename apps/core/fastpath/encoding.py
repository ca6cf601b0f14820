"""Content codings of the fast path's bodies: ``Accept-Encoding`` as RFC 9110 defines it
(section 12.5.3) and the gzip form of a body, built once per revision beside the plain one.

Only gzip: no maintained brotli or zstd package is installed (see
docs/decisions/0027-precompressed-bodies.md). The gzip bytes are deterministic (``mtime=0``,
no file name, one level), so every process of a fleet compresses a revision to the same
bytes and the strong entity tag of the gzip form (``coded_tag``) holds across them."""

from __future__ import annotations

import collections
import functools
import gzip
import re
from dataclasses import dataclass

GZIP = "gzip"
IDENTITY = "identity"
# Once per revision and document: the best ratio is worth the extra milliseconds (the 27 kB
# features body of benchmarks/serving.py: 1,197 B at level 9, 1,263 B at level 6).
GZIP_LEVEL = 9

# How many bodies this process has gzip-compressed, by what was compressed ("body": a whole
# built document, "view": one feature or a filtered list, "hydration": an event stream's
# connected event, "event": one of its update events): an inspection point for tests and
# operators that the compression happens once per revision (or pair of revisions), never per
# request or connection.
compressions: collections.Counter[str] = collections.Counter()

# One element of the list: a coding (a token, or ``*``) and optional parameters, of which only
# the weight ``q`` is defined (RFC 9110 12.4.2: "0" to "1" with at most three decimals).
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_ELEMENT = re.compile(
    rf"\s*({_TCHARS})\s*((?:;\s*{_TCHARS}\s*=\s*(?:{_TCHARS}|\"[^\"]*\")\s*)*)", re.ASCII
)
_PARAMETER = re.compile(rf";\s*({_TCHARS})\s*=\s*({_TCHARS}|\"[^\"]*\")\s*", re.ASCII)
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z", re.ASCII)


@dataclass(frozen=True)
class AcceptEncoding:
    """A parsed ``Accept-Encoding``: the weight of each coding named (lower-case; ``x-gzip``
    counted as ``gzip``, RFC 9110 8.4.1.3) and of ``*``, None for those not named."""

    weights: dict[str, float]
    star: float | None

    def weight(self, coding: str) -> float | None:
        """The weight the client gives ``coding``: its own entry, else ``*``'s, else None
        (not named at all)."""
        own = self.weights.get(coding)
        return own if own is not None else self.star


def parse_accept_encoding(value: str | None) -> AcceptEncoding | None:
    """Parse the header's value; None when it is absent or malformed (the request is then
    answered as if it had none: plain bytes, always safe). An empty value is a valid header
    asking for no content coding at all."""
    if value is None:
        return None
    weights: dict[str, float] = {}
    star: float | None = None
    for raw in value.split(","):
        if not raw.strip():
            continue  # empty list elements are allowed (RFC 9110 5.6.1)
        element = _ELEMENT.fullmatch(raw)
        if element is None:
            return None
        coding = element.group(1).lower()
        weight = 1.0
        for name, argument in _PARAMETER.findall(element.group(2)):
            if name.lower() == "q":
                if _QVALUE.match(argument) is None:
                    return None
                weight = float(argument)
        if coding == "x-gzip":
            coding = GZIP
        if coding == "*":
            star = weight if star is None else max(star, weight)
        else:
            weights[coding] = max(weights.get(coding, 0.0), weight)
    return AcceptEncoding(weights, star)


def choose_coding(header: str | None, *, gzip_available: bool) -> str:
    """The content coding to answer with: ``"gzip"`` or ``"identity"``.

    Gzip when the body has a gzip form and the client gives gzip a weight above 0 (its own
    entry or ``*``'s) that is at least identity's *explicit* weight; ties go to gzip, the
    smaller. Identity without an entry of its own is the fallback, not a rival: RFC 9110 keeps
    it acceptable unless ``identity;q=0`` or ``*;q=0`` excludes it, and gives it no weight.
    Plain bytes when there is no header (an old or minimal client: safe, though the RFC would
    allow any coding), when it is malformed, and when nothing acceptable is left (both
    excluded: identity rather than a 406, since a runtime without its configuration is worse
    off than one reading plain JSON)."""
    if not gzip_available:
        return IDENTITY
    return GZIP if _prefers_gzip(header) else IDENTITY


# A fleet sends a handful of distinct values: the hot path looks the answer up instead of
# parsing (bounded: the header is the client's to vary).
@functools.lru_cache(maxsize=512)
def _prefers_gzip(header: str | None) -> bool:
    accepted = parse_accept_encoding(header)
    if accepted is None:
        return False
    gzip_weight = accepted.weight(GZIP)
    if not gzip_weight:
        return False
    identity_weight = accepted.weights.get(IDENTITY)
    return identity_weight is None or identity_weight <= gzip_weight


def gzip_form(body: bytes, *, what: str = "body") -> bytes | None:
    """The gzip bytes of ``body`` (deterministic), or None when they would not be smaller
    (a tiny body: the plain one is served to everyone). Counted in ``compressions``."""
    compressions[what] += 1
    packed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
    return packed if len(packed) < len(body) else None


def coded_tag(etag: str, coding: str) -> str:
    """The entity tag of ``etag``'s representation in ``coding``: RFC 9110 8.8.3 wants a
    strong tag to differ between content codings of the same content, so the gzip form of
    ``"abc"`` is ``"abc-gzip"`` (and of ``W/"abc"``, ``W/"abc-gzip"``)."""
    if coding == IDENTITY or not etag.endswith('"'):
        return etag
    return f'{etag[:-1]}-{coding}"'


def gzip_member(data: bytes, *, what: str) -> bytes:
    """``data`` as one complete, deterministic gzip member (RFC 1952 2.2), whatever its size:
    an event stream in gzip is a sequence of such members, one per event, so a client's
    decoder (which reads concatenated members as one stream) yields each event whole as soon
    as its member arrives, and no compressor is held per connection. Counted in
    ``compressions`` under ``what``."""
    compressions[what] += 1
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


# The event stream's constant lines, as plain bytes and as their gzip members (built once, at
# import: not counted).
KEEP_ALIVE = b": keep-alive\n\n"
NOT_MODIFIED = b": not modified\n\n"
KEEP_ALIVE_GZIP = gzip.compress(KEEP_ALIVE, compresslevel=GZIP_LEVEL, mtime=0)
NOT_MODIFIED_GZIP = gzip.compress(NOT_MODIFIED, compresslevel=GZIP_LEVEL, mtime=0)


def sse_event(event: str, revision: int, data: bytes) -> bytes:
    """One server-sent event as it goes on the wire: ``event: <event>\\nid: <revision>\\n``
    ``data: <data>\\n\\n`` (``data`` one line of JSON)."""
    return b"event: %s\nid: %d\ndata: %s\n\n" % (event.encode(), revision, data)
