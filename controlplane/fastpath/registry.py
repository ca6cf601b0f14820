"""What the owning apps register: one builder per route, called once per revision and scope."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


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


def no_variant(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    return ""


@dataclass(frozen=True)
class Route:
    path: str
    kind: str
    build: Builder
    variant: VariantOf = no_variant
    max_wait_s: float = 60.0


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


@dataclass
class Registry:
    routes: dict[str, Route] = field(default_factory=dict)
    streams: dict[str, StreamRoute] = field(default_factory=dict)


registry = Registry()


def register(route: Route) -> None:
    registry.routes[route.path] = route


def register_stream(route: StreamRoute) -> None:
    registry.streams[route.path] = route
