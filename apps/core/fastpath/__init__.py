"""The runtime fast path: a thin asyncio layer in front of Django for what runtimes poll.

It holds no business logic and imports no app, only lookups the owning apps register: the
runtime token (by hash, cached), the current version of the ``(topic, key)`` a route waits on
(e.g. the token's environment's revision, kept fresh by events from ``apps.core.events``),
and the serialised bytes for that version (built once per version and scope by a builder the
owning app registers). ETag and ``If-None-Match`` give 304s; ``?wait=N`` long-polls; stream
routes send server-sent events. Everything else goes to Django."""

from .registry import (
    ActionRoute,
    OperationDoc,
    Route,
    StreamRoute,
    TokenScope,
    Topic,
    WaitRoute,
    provide_token_lookup,
    register,
    register_action,
    register_stream,
    register_topic,
    register_wait,
)

__all__ = [
    "ActionRoute",
    "OperationDoc",
    "Route",
    "StreamRoute",
    "TokenScope",
    "Topic",
    "WaitRoute",
    "provide_token_lookup",
    "register",
    "register_action",
    "register_stream",
    "register_topic",
    "register_wait",
]
