"""What the owning apps register: one builder per route, called once per revision and scope."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TokenScope:
    """What a runtime token grants: one tenant and environment, optionally one agent."""

    token_id: int
    tenant_id: int
    environment_id: int
    agent_id: int | None


# (scope, variant) -> (revision the content was read at, body bytes). Synchronous; it may use
# the ORM. It must read the revision in the same transaction as the content.
Builder = Callable[[TokenScope, str], tuple[int, bytes]]
# Chooses a variant of the body from the request (e.g. an SDK's spec version); "" if none.
VariantOf = Callable[[Mapping[str, str], Mapping[str, str]], str]
# Names the part of the built body one request asks for: (the path after the route's own
# path, e.g. "/my-flag" or "", the query as (name, value) pairs in order, repeats kept) -> a
# key; "" means the whole body as built. Pure, no I/O.
ViewKeyOf = Callable[[str, Sequence[tuple[str, str]]], str]
# (whole built body, view key) -> the bytes of that view, or None when the key names nothing
# (the fast path answers 404). Pure, no I/O; the result is cached per revision and key.
ViewOf = Callable[[bytes, str], bytes | None]
# The entity tag a body declares inside itself (e.g. Unleash's ``meta.etag``) as it must
# appear in the ``ETag`` header, or None: the fast path then tags the body by its digest.
EtagOf = Callable[[bytes], str | None]


def no_variant(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    return ""


def whole_body(subpath: str, query: Sequence[tuple[str, str]]) -> str:
    return ""


def not_found(subpath: str) -> str:
    return "Not found."


@dataclass(frozen=True)
class OperationDoc:
    """How one operation of a route is described in the OpenAPI document (``/api/schema/``,
    see ``apps.core.fastpath.openapi``). The fast path adds what every route shares (the
    runtime token, ``If-None-Match``, ``wait``, ETag/304 and the error answers); this says
    what is the route's own.

    ``path``: the OpenAPI path template, the route's path or, for a route with ``subpaths``,
    e.g. ``/api/client/features/{name}`` (its path parameters go in ``parameters``).
    ``response``: the JSON Schema of the 200 body (may ``$ref`` ``#/components/schemas/X``
    for the schemas in ``components``). ``parameters``: OpenAPI parameter objects besides
    the shared ones."""

    path: str
    operation_id: str
    summary: str
    description: str
    tag: str
    response: Mapping[str, Any]
    parameters: Sequence[Mapping[str, Any]] = ()
    components: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """A GET/HEAD route answered from the per-revision cache. Routes that share ``kind`` must
    share ``build`` and ``etag_of``: they share the cached body and differ only by view.

    ``subpaths``: the route also answers ``<path>/<anything>`` (the rest is given to
    ``view_key``), e.g. ``/api/client/features/<name>``. ``vary``: request headers besides
    ``Authorization`` that choose the body (sent in ``Vary`` for HTTP caches)."""

    path: str
    kind: str
    build: Builder
    variant: VariantOf = no_variant
    max_wait_s: float = 60.0
    subpaths: bool = False
    view_key: ViewKeyOf = whole_body
    view: ViewOf | None = None
    etag_of: EtagOf | None = None
    vary: tuple[str, ...] = ()
    # the 404 message when ``view`` names nothing, from the sub-path
    not_found: Callable[[str], str] = not_found
    # its operations in the OpenAPI document; tests/project/test_api_schema.py refuses a
    # registered route without them
    docs: tuple[OperationDoc, ...] = ()


@dataclass(frozen=True)
class StreamRoute:
    """Server-sent events: ``connected_event`` carries the full body on connect, then
    ``updated_event`` carries ``delta(old_body, new_body)`` after each revision (skipped when
    it returns None)."""

    path: str
    kind: str
    build: Builder
    connected_event: str
    updated_event: str
    delta: Callable[[bytes, bytes], str | None]
    variant: VariantOf = no_variant
    heartbeat_s: float = 15.0
    vary: tuple[str, ...] = ()
    docs: tuple[OperationDoc, ...] = ()


@dataclass
class Registry:
    routes: dict[str, Route] = field(default_factory=dict)
    streams: dict[str, StreamRoute] = field(default_factory=dict)

    def match(self, path: str) -> tuple[Route, str] | None:
        """The route for a request path and the rest of the path after the route's own
        (``""`` for an exact match); None when no route answers it."""
        route = self.routes.get(path)
        if route is not None:
            return route, ""
        for candidate in self.routes.values():
            prefix = candidate.path.rstrip("/") + "/"
            if candidate.subpaths and path.startswith(prefix):
                return candidate, path[len(prefix) - 1 :]
        return None


registry = Registry()


def register(route: Route) -> None:
    registry.routes[route.path] = route


def register_stream(route: StreamRoute) -> None:
    registry.streams[route.path] = route
