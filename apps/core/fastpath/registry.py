"""What the owning apps register with the fast path — it imports no app, so everything it
needs to know comes from here:

- routes (``Route``: cached GET/HEAD bodies, long-poll with ``?wait=``; ``StreamRoute``:
  server-sent events), each with a path template (``/api/client/features/{name}``), its
  methods, and the event topic its waiters wait on (``topic``, keyed per request by
  ``topic_key``);
- topics (``Topic``): how the fast path reads a topic's current version when it has heard
  nothing yet, and catches up with what a lost pub/sub message missed;
- lookups (``provide_token_lookup``): how a raw runtime token becomes a ``TokenScope``.

Apps register in their ``AppConfig.ready`` (e.g. ``accounts`` the token lookup, ``tenancy``
the ``environment.revision`` topic, ``runtimes`` its routes)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from apps.core.events import ENVIRONMENT_REVISION


@dataclass(frozen=True)
class TokenScope:
    """What a runtime token grants: one tenant and environment, optionally one agent."""

    token_id: int
    tenant_id: int
    environment_id: int
    agent_id: int | None


# (scope, variant, topic key) -> (version of the route's topic the content was read at, body
# bytes); the topic key is the route's ``topic_key`` of the request (for the default
# ``environment.revision`` topic: the token's environment id). Synchronous; it may use the
# ORM. It must read the version in the same transaction as the content.
Builder = Callable[[TokenScope, str, str], tuple[int, bytes]]
# Chooses a variant of the body from the request (e.g. an SDK's spec version); "" if none.
VariantOf = Callable[[Mapping[str, str], Mapping[str, str]], str]
# Names the part of the built body one request asks for: (the path parameters, e.g.
# {"name": "my-flag"} or {}, the query as (name, value) pairs in order, repeats kept) -> a
# key; "" means the whole body as built. Pure, no I/O.
ViewKeyOf = Callable[[Mapping[str, str], Sequence[tuple[str, str]]], str]
# The key of a route's topic one request waits on, from the token's scope and the path
# parameters; e.g. the environment id for ``environment.revision``. Pure, no I/O.
TopicKeyOf = Callable[[TokenScope, Mapping[str, str]], str]
# (whole built body, view key) -> the bytes of that view, or None when the key names nothing
# (the fast path answers 404). Pure, no I/O; the result is cached per revision and key.
ViewOf = Callable[[bytes, str], bytes | None]
# The entity tag a body declares inside itself (e.g. Unleash's ``meta.etag``) as it must
# appear in the ``ETag`` header, or None: the fast path then tags the body by its digest.
EtagOf = Callable[[bytes], str | None]


def no_variant(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    return ""


def whole_body(params: Mapping[str, str], query: Sequence[tuple[str, str]]) -> str:
    return ""


def not_found(params: Mapping[str, str]) -> str:
    return "Not found."


def environment_key(scope: TokenScope, params: Mapping[str, str]) -> str:
    """The default topic key: the token's environment (for ``environment.revision``)."""
    return str(scope.environment_id)


_PARAMETER = re.compile(r"\{(\w+)(?::(path))?\}")


def compile_path(template: str) -> re.Pattern[str] | None:
    """The pattern of a path template, None for a plain path. ``{name}`` matches one segment
    (no ``/``); ``{name:path}`` the rest of the path, slashes and empty included."""
    if "{" not in template:
        return None
    pattern, end = "", 0
    for match in _PARAMETER.finditer(template):
        pattern += re.escape(template[end : match.start()])
        pattern += f"(?P<{match.group(1)}>{'.*' if match.group(2) else '[^/]+'})"
        end = match.end()
    return re.compile(pattern + re.escape(template[end:]) + r"\Z")


@dataclass(frozen=True)
class OperationDoc:
    """How one operation of a route is described in the OpenAPI document (``/api/schema/``,
    see ``apps.core.fastpath.openapi``). The fast path adds what every route shares (the
    runtime token, ``If-None-Match``, ``wait``, ETag/304 and the error answers); this says
    what is the route's own.

    ``path``: the OpenAPI path template, e.g. ``/api/client/features/{name}`` (its path
    parameters go in ``parameters``).
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
    # the JSON Schema of the request body (action routes)
    request: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Route:
    """A route answered from the per-version cache of a built body. Routes that share
    ``kind`` must share ``build``, ``etag_of`` and ``topic``: they share the cached body and
    differ only by view.

    ``path``: a plain path or a template with parameters (``/api/client/features/{name}``,
    see ``compile_path``), given to ``view_key``. ``methods``: what it answers (GET and HEAD:
    the body is a cached read). ``topic``: the event topic whose version labels the body and
    that a long-poll (``?wait=``) waits on, keyed per request by ``topic_key``; ``build``
    must return that topic's version as the body's. ``vary``: request headers besides
    ``Authorization`` that choose the body (sent in ``Vary`` for HTTP caches)."""

    path: str
    kind: str
    build: Builder
    variant: VariantOf = no_variant
    max_wait_s: float = 60.0
    methods: tuple[str, ...] = ("GET", "HEAD")
    topic: str = ENVIRONMENT_REVISION
    topic_key: TopicKeyOf = environment_key
    view_key: ViewKeyOf = whole_body
    view: ViewOf | None = None
    etag_of: EtagOf | None = None
    vary: tuple[str, ...] = ()
    # the 404 message when ``view`` names nothing, from the path parameters
    not_found: Callable[[Mapping[str, str]], str] = not_found
    # its operations in the OpenAPI document; tests/project/test_api_schema.py refuses a
    # registered route without them
    docs: tuple[OperationDoc, ...] = ()
    # ``vary`` as the names arrive in an ASGI scope (lower-case bytes), worked out once: the
    # answer memo reads them on every request
    vary_names: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(name.lower().encode("latin-1") for name in self.vary)
        object.__setattr__(self, "vary_names", names)  # frozen: set once, here


@dataclass(frozen=True)
class StreamRoute:
    """Server-sent events: ``connected_event`` carries the full body on connect, then
    ``updated_event`` carries ``delta(old_body, new_body)`` after each new version of
    ``topic`` (keyed by ``topic_key``; skipped when it returns None). Answers GET only."""

    path: str
    kind: str
    build: Builder
    connected_event: str
    updated_event: str
    delta: Callable[[bytes, bytes], str | None]
    variant: VariantOf = no_variant
    methods: tuple[str, ...] = ("GET",)
    topic: str = ENVIRONMENT_REVISION
    topic_key: TopicKeyOf = environment_key
    heartbeat_s: float = 15.0
    vary: tuple[str, ...] = ()
    docs: tuple[OperationDoc, ...] = ()


# (the token's scope, the request body, the path parameters) -> (HTTP status, the JSON answer).
# Synchronous, may use the ORM: it runs in the fast path's database thread. A database
# connection lost during the call is replaced and the call run again (``state._db_call``), so
# it must be idempotent (an idempotency key in the body). Field errors answer 400 as
# ``{"detail", "errors"}``; an error answer's ``retry_after_s`` (whole seconds) is sent as
# its ``Retry-After`` header.
ActionHandler = Callable[[TokenScope, bytes, Mapping[str, str]], tuple[int, Mapping[str, Any]]]


@dataclass(frozen=True)
class ActionRoute:
    """A small write a runtime makes on its hot path (a budget reservation), answered without
    Django's request cycle: the fast path checks the runtime token (401), reads at most
    ``max_body_bytes`` of body (413), and hands the bytes to ``handle`` in its database
    thread. Answers POST only. ``topic`` is unused (shared with the other route kinds)."""

    path: str
    kind: str
    handle: ActionHandler
    methods: tuple[str, ...] = ("POST",)
    max_body_bytes: int = 64 * 1024
    topic: str = ENVIRONMENT_REVISION
    docs: tuple[OperationDoc, ...] = ()


# (the token's scope, the path parameters) -> (HTTP status, the JSON answer, settled). Sync,
# may use the ORM (the fast path's database thread); it may write what a second run writes the
# same (an expiry that is due). ``settled``: nothing the route waits for can change the answer
# any more (a decided approval), so a long-poll answers at once.
WaitReader = Callable[[TokenScope, Mapping[str, str]], tuple[int, Mapping[str, Any], bool]]


@dataclass(frozen=True)
class WaitRoute:
    """A JSON read that a runtime may long-poll until it settles (an approval's decision):
    ``GET path?wait=N`` reads once; while the answer is 200 and not settled, it waits for an
    event on ``(topic, topic_key)`` — or ``recheck_s`` (None: ``FASTPATH_WAIT_RECHECK_S``), the
    safety net for a lost event — and
    reads again, until settled or N seconds passed. Nothing is cached: each read is the
    owner's ``read``. The topic should be a ``Topic(wake_only=True)``: its keys (one per
    approval) are many and short-lived, so the fast path keeps no version per key."""

    path: str
    kind: str
    read: WaitReader
    topic: str
    topic_key: TopicKeyOf
    max_wait_s: float = 60.0
    recheck_s: float | None = None
    methods: tuple[str, ...] = ("GET",)
    docs: tuple[OperationDoc, ...] = ()


@dataclass(frozen=True)
class Topic:
    """How the fast path knows a topic's current version per key without an event.

    ``current(key)``: the version now (sync, may use the ORM; raises if the key names
    nothing). ``poll_all()``: every key's version, polled every few seconds as the safety net
    for a lost pub/sub message (None: no poll). ``version_of(payload)``: the version an event
    announces (None: the fast path counts events instead)."""

    name: str
    current: Callable[[str], int]
    poll_all: Callable[[], Mapping[str, int]] | None = None
    # Events only wake whoever waits on the key now; no version is kept (``WaitRoute``).
    wake_only: bool = False
    version_of: Callable[[Mapping[str, Any]], int | None] = field(
        default=lambda payload: revision_in_payload(payload)
    )


def revision_in_payload(payload: Mapping[str, Any]) -> int | None:
    """The default ``Topic.version_of``: the payload's ``revision``, if it has one."""
    value = payload.get("revision")
    return int(value) if value is not None else None


# sync, uses the ORM: raw token -> (scope, seconds until it expires or None) | None
TokenLookup = Callable[[str], "tuple[TokenScope, float | None] | None"]

AnyRoute = Route | StreamRoute | ActionRoute | WaitRoute
NO_PARAMETERS: dict[str, str] = {}  # shared by every plain-path match: never mutated


@dataclass
class Registry:
    """Every registered route by method and path, topics by name, and the token lookup."""

    routes: dict[str, AnyRoute] = field(default_factory=dict)  # plain paths
    templates: list[tuple[re.Pattern[str], AnyRoute]] = field(default_factory=list)
    topics: dict[str, Topic] = field(default_factory=dict)
    token_lookup: TokenLookup | None = None

    def add(self, route: AnyRoute) -> None:
        pattern = compile_path(route.path)
        if pattern is None:
            self.routes[route.path] = route
        else:
            self.templates = [(p, r) for p, r in self.templates if r.path != route.path]
            self.templates.append((pattern, route))

    def remove(self, path: str) -> None:
        self.routes.pop(path, None)
        self.templates = [(p, r) for p, r in self.templates if r.path != path]

    def all(self) -> list[AnyRoute]:
        return [*self.routes.values(), *(route for _, route in self.templates)]

    def match(self, path: str) -> tuple[AnyRoute, dict[str, str]] | None:
        """The route for a request path and its path parameters; None when no route answers
        it (the request goes to Django). Plain paths first: the hot path is one dict look-up."""
        route = self.routes.get(path)
        if route is not None:
            return route, NO_PARAMETERS
        for pattern, candidate in self.templates:
            found = pattern.match(path)
            if found is not None:
                return candidate, found.groupdict()
        return None

    def topics_waited_on(self) -> set[str]:
        return {route.topic for route in self.all()} | set(self.topics)


registry = Registry()


def register(route: Route) -> None:
    """Serve ``route`` on the fast path (replacing one registered at the same path)."""
    registry.add(route)


def register_action(route: ActionRoute) -> None:
    """Answer the action ``route`` (POST) on the fast path."""
    registry.add(route)


def register_wait(route: WaitRoute) -> None:
    """Answer the long-pollable read ``route`` (GET) on the fast path."""
    registry.add(route)


def register_stream(route: StreamRoute) -> None:
    """Serve the event stream ``route`` on the fast path."""
    registry.add(route)


def register_topic(topic: Topic) -> None:
    """Tell the fast path how to read ``topic``'s versions (see ``Topic``)."""
    registry.topics[topic.name] = topic


def provide_token_lookup(lookup: TokenLookup) -> None:
    """Tell the fast path how to authenticate a raw runtime token (the owning app does)."""
    registry.token_lookup = lookup
